import { TdvmcallStatus } from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  acknowledgedPages,
  formatBehaviour,
  hostileVmms,
  parseBehaviour,
  resolveStep,
  TestkitError,
  vmmBehaviour,
} from '../src/index.js';

const SHARED = 1n << 47n;
const PAGE = 4096n;

describe('behaviour scripts are plain data', () => {
  it('round-trips every generated behaviour through JSON', () => {
    fc.assert(
      fc.property(vmmBehaviour(), (behaviour) => {
        expect(parseBehaviour(formatBehaviour(behaviour))).toEqual(behaviour);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips every catalog behaviour', () => {
    for (const hostile of hostileVmms) {
      const behaviour = hostile.behaviour({ seed: 9 });
      expect(parseBehaviour(formatBehaviour(behaviour))).toEqual(behaviour);
    }
  });

  it.each([
    ['{"steps":[],"order":"cycle"}', 'steps'],
    ['{"steps":[{"convert":"all","status":"auto","r11":"next"}],"order":"sometimes"}', 'order'],
    [
      '{"steps":[{"convert":{"upTo":0},"status":"auto","r11":"next"}],"order":"cycle"}',
      'steps[0].convert.upTo',
    ],
    [
      '{"steps":[{"convert":"all","status":{"raw":"12"},"r11":"next"}],"order":"cycle"}',
      'steps[0].status.raw',
    ],
    [
      '{"steps":[{"convert":"all","status":"auto","r11":{"unaligned":4096}}],"order":"cycle"}',
      'steps[0].r11.unaligned',
    ],
    [
      '{"steps":[{"convert":"all","status":"auto","r11":"next","effects":["nap"]}],"order":"cycle"}',
      'steps[0].effects[0]',
    ],
    [
      '{"steps":[{"convert":"all","status":"auto","r11":"next","extra":1}],"order":"cycle"}',
      'steps[0].extra',
    ],
    ['not json', 'behaviour'],
  ])('refuses %s, naming %s', (json, field) => {
    const error = (() => {
      try {
        parseBehaviour(json);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(TestkitError);
    expect(error).toMatchObject({ code: 'INVALID_BEHAVIOUR', argument: field });
  });
});

describe('resolveStep', () => {
  const request = { r12: SHARED | 0x10000n, r13: 8n * PAGE, sharedBit: SHARED };

  it('honest chunk: RETRY with R11 = the next GPA, shared bit kept; SUCCESS once all is done', () => {
    expect(resolveStep({ convert: { upTo: 3 }, status: 'auto', r11: 'next' }, request, 1000)).toMatchObject({
      convertPages: 3,
      withinRequest: 3,
      r10: TdvmcallStatus.RETRY,
      r11: request.r12 + 3n * PAGE,
    });
    expect(resolveStep({ convert: { upTo: 9 }, status: 'auto', r11: 'next' }, request, 1000)).toMatchObject({
      convertPages: 8,
      r10: TdvmcallStatus.SUCCESS,
      r11: 0n,
    });
  });

  it('lies as told: more than asked, R11 below, flipped, unaligned, raw; capped by maxPages', () => {
    expect(resolveStep({ convert: { extra: 2 }, status: 'auto', r11: 'next' }, request, 1000)).toMatchObject({
      convertPages: 10,
      withinRequest: 8,
    });
    expect(resolveStep({ convert: 'all', status: 'auto', r11: 'next' }, request, 5).convertPages).toBe(5);
    const r11 = (choice: Parameters<typeof resolveStep>[0]['r11']) =>
      resolveStep({ convert: { upTo: 1 }, status: 'RETRY', r11: choice }, request, 1000).r11;
    expect(r11({ below: 2 })).toBe(request.r12 - 2n * PAGE);
    expect(r11('shared-bit-flipped')).toBe(0x11000n);
    expect(r11({ unaligned: 0x800 })).toBe(request.r12 + PAGE + 0x800n);
    expect(r11({ pastEnd: 1 })).toBe(request.r12 + 9n * PAGE);
    expect(r11({ raw: '0xffffffffffffffff' })).toBe((1n << 64n) - 1n);
  });
});

describe('acknowledgedPages', () => {
  const r12 = SHARED | 0x10000n;
  const r13 = 8n * PAGE;
  it('SUCCESS acknowledges the request; RETRY the pages up to R11 inside it; anything else nothing', () => {
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.SUCCESS, 0n, SHARED)).toBe(8);
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.RETRY, r12 + 3n * PAGE, SHARED)).toBe(3);
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.RETRY, r12 + 3n * PAGE + 1n, SHARED)).toBe(4);
    // Asterinas's encoding (shared bit cleared) names the same resume point.
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.RETRY, 0x13000n, SHARED)).toBe(3);
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.RETRY, r12 + r13, SHARED)).toBe(0);
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.RETRY, r12 - PAGE, SHARED)).toBe(0);
    expect(acknowledgedPages(r12, r13, TdvmcallStatus.INVALID_OPERAND, r12 + PAGE, SHARED)).toBe(0);
  });
});
