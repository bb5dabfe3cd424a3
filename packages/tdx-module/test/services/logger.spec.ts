import { format } from 'node:util';
import createDebug from 'debug';
import { afterEach, describe, expect, it } from 'vitest';
import { buildTd, encodeLeaf, makeGprs, SeamcallLeaf, TdxModule } from '../../src/index.js';
import { HotLogger } from '../../src/services/logger.js';

describe('HotLogger (the SEAMCALL and TDCALL debug lines)', () => {
  const saved = { log: createDebug.log, namespaces: '' };
  afterEach(() => {
    createDebug.log = saved.log;
    createDebug.disable();
    if (saved.namespaces !== '') createDebug.enable(saved.namespaces);
  });

  /** Captures debug output from now on. */
  function capture(): string[] {
    saved.namespaces = createDebug.disable();
    const lines: string[] = [];
    createDebug.log = (...args: unknown[]) => {
      lines.push(format(...args));
    };
    return lines;
  }

  it('follows debug.enable and debug.disable made after it was created', () => {
    const lines = capture();
    const logger = new HotLogger('hot-logger-test');
    expect(logger.enabled).toBe(false);
    createDebug.enable('tdxsim:module:hot-logger-test');
    expect(logger.enabled).toBe(true);
    logger.log('value %d', 7);
    createDebug.enable('tdxsim:module:other');
    expect(logger.enabled).toBe(false);
    createDebug.enable('tdxsim:module:*');
    expect(logger.enabled).toBe(true);
    createDebug.disable();
    expect(logger.enabled).toBe(false);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('tdxsim:module:hot-logger-test');
    expect(lines[0]).toContain('value 7');
  });

  it('logs each SEAMCALL once DEBUG selects tdxsim:module:seamcall, at run time', async () => {
    const lines = capture();
    const module = new TdxModule();
    const td = await buildTd(module, { vcpus: 1 });
    const read = encodeLeaf(SeamcallLeaf.MNG_RD);
    await module.seamcall(read, makeGprs({ rcx: td.tdr }));
    expect(lines).toEqual([]);
    createDebug.enable('tdxsim:module:seamcall');
    await module.seamcall(read, makeGprs({ rcx: td.tdr }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/TDH\.MNG\.RD rcx=0x[0-9a-f]+ rdx=0x0 r8=0x0 -> /);
  });
});
