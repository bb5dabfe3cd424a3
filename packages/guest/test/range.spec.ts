import { assertInvariants, type Gpaw, NullTraceSink, TdvmcallStatus } from '@tdxsim/tdx-module';
import { Container } from 'inversify';
import { describe, expect, it } from 'vitest';
import {
  GuestError,
  type GuestErrorCode,
  GuestIds,
  guestModule,
  TdGuest,
  type TdGuestOptions,
  validateRange,
} from '../src/index.js';
import { setupGuestTd } from './test-vmm.js';

/**
 * Bad input is a typed GuestError naming the argument, thrown before any hypercall (issue 3, "What must be shown":
 * unaligned start or size, zero size, a range that wraps or crosses GPAW or the shared bit).
 */

const PAGE = 4096;
const MiB = 2 ** 20;
const MEMORY = 4 * MiB;

/** The GuestError `fn` throws or rejects with (either way is accepted); fails the test when it does neither. */
async function guestError(fn: () => unknown): Promise<GuestError> {
  let caught: unknown;
  try {
    await fn();
  } catch (error) {
    caught = error;
  }
  if (!GuestError.is(caught)) return expect.fail(`expected a GuestError, got ${String(caught)}`);
  expect(caught).toBeInstanceOf(Error);
  expect(caught.name).toBe('GuestError');
  return caught;
}

function expectError(error: GuestError, code: GuestErrorCode, argument: string): void {
  expect({ code: error.code, argument: error.argument }).toEqual({ code, argument });
}

/** A booted guest whose VMM would answer MapGPA honestly, so a call that got through would show in `vmm.calls`. */
async function bootGuest(gpaw: Gpaw = 48) {
  const { module, td, vmm } = await setupGuestTd({ gpaw });
  const guest = await TdGuest.boot(td.guest(0), { memoryBytes: MEMORY });
  return { module, td, vmm, guest };
}

interface BadRange {
  readonly name: string;
  readonly start: number;
  readonly size: number;
  readonly argument: 'start' | 'size';
}

const badRanges48: BadRange[] = [
  { name: 'unaligned start', start: 0x1001, size: PAGE, argument: 'start' },
  { name: 'start 0x800', start: 0x800, size: PAGE, argument: 'start' },
  { name: 'unaligned size', start: 0x1000, size: PAGE + 1, argument: 'size' },
  { name: 'size half a page', start: 0x1000, size: 0x800, argument: 'size' },
  { name: 'zero size', start: 0x1000, size: 0, argument: 'size' },
  { name: 'negative size', start: 0x1000, size: -PAGE, argument: 'size' },
  { name: 'negative start', start: -PAGE, size: PAGE, argument: 'start' },
  { name: 'non-integer start', start: 0.5, size: PAGE, argument: 'start' },
  { name: 'non-integer size', start: 0x1000, size: 1.5 * PAGE, argument: 'size' },
  { name: 'NaN start', start: Number.NaN, size: PAGE, argument: 'start' },
  { name: 'NaN size', start: 0x1000, size: Number.NaN, argument: 'size' },
  { name: 'infinite size', start: 0x1000, size: Number.POSITIVE_INFINITY, argument: 'size' },
  { name: 'start beyond safe integers', start: 2 ** 53, size: PAGE, argument: 'start' },
  { name: 'size beyond safe integers', start: 0, size: 2 ** 53, argument: 'size' },
  { name: 'a range that wraps past 2^52', start: 2 ** 52 - PAGE, size: 2 * PAGE, argument: 'size' },
  { name: 'a range ending exactly at 2^52', start: 2 ** 51, size: 2 ** 51, argument: 'size' },
  { name: 'start at the shared bit (bit 47)', start: 2 ** 47, size: PAGE, argument: 'start' },
  { name: 'start above the shared bit', start: 2 ** 47 + 16 * PAGE, size: PAGE, argument: 'start' },
  { name: 'start beyond GPAW 48', start: 2 ** 48, size: PAGE, argument: 'start' },
  { name: 'a range crossing the shared bit', start: 2 ** 47 - PAGE, size: 2 * PAGE, argument: 'size' },
  { name: 'a range from 0 past the shared bit', start: 0, size: 2 ** 47 + PAGE, argument: 'size' },
];

const badRanges52: BadRange[] = [
  { name: 'start at the shared bit (bit 51)', start: 2 ** 51, size: PAGE, argument: 'start' },
  { name: 'a range crossing the shared bit', start: 2 ** 51 - PAGE, size: 2 * PAGE, argument: 'size' },
  { name: 'a range that wraps past 2^52', start: 2 ** 52 - PAGE, size: 2 * PAGE, argument: 'size' },
  { name: 'unaligned start', start: 2 ** 48 + 1, size: PAGE, argument: 'start' },
];

describe('validateRange', () => {
  it.each(badRanges48)('GPAW 48: $name → INVALID_RANGE naming $argument', async (c) => {
    expectError(await guestError(() => validateRange(c.start, c.size, 48)), 'INVALID_RANGE', c.argument);
  });

  it.each(badRanges52)('GPAW 52: $name → INVALID_RANGE naming $argument', async (c) => {
    expectError(await guestError(() => validateRange(c.start, c.size, 52)), 'INVALID_RANGE', c.argument);
  });

  it('accepts the boundaries: a range ending exactly at the shared bit, and page 0', () => {
    expect(validateRange(2 ** 47 - PAGE, PAGE, 48)).toEqual({ start: 2 ** 47 - PAGE, end: 2 ** 47 });
    expect(validateRange(0, 2 ** 47, 48)).toEqual({ start: 0, end: 2 ** 47 });
    expect(validateRange(0, PAGE, 48)).toEqual({ start: 0, end: PAGE });
    expect(validateRange(2 ** 51 - PAGE, PAGE, 52)).toEqual({ start: 2 ** 51 - PAGE, end: 2 ** 51 });
    // Above bit 47 is private memory under GPAW 52.
    expect(validateRange(2 ** 47, PAGE, 52)).toEqual({ start: 2 ** 47, end: 2 ** 47 + PAGE });
  });

  it('names the arguments as the caller says', async () => {
    const names = { start: 'address', size: 'numPages' };
    expectError(await guestError(() => validateRange(0x1001, PAGE, 48, names)), 'INVALID_RANGE', 'address');
    expectError(await guestError(() => validateRange(0x1000, 0, 48, names)), 'INVALID_RANGE', 'numPages');
  });
});

describe('TdGuest conversion API: bad ranges rejected before any hypercall', () => {
  const methods = [
    { name: 'setShared', call: (g: TdGuest, start: number, size: number) => g.setShared(start, size) },
    { name: 'setPrivate', call: (g: TdGuest, start: number, size: number) => g.setPrivate(start, size) },
    {
      name: 'mapGpa(shared)',
      call: (g: TdGuest, start: number, size: number) => g.mapGpa(start, size, true),
    },
    {
      name: 'mapGpa(private)',
      call: (g: TdGuest, start: number, size: number) => g.mapGpa(start, size, false),
    },
  ];

  it.each(methods)('$name: every bad range under GPAW 48 is INVALID_RANGE naming the argument', async (m) => {
    const { module, td, vmm, guest } = await bootGuest(48);
    const before = [...guest.ledger.entries()];
    for (const c of badRanges48) {
      expectError(await guestError(() => m.call(guest, c.start, c.size)), 'INVALID_RANGE', c.argument);
    }
    expect(vmm.calls).toEqual([]);
    expect([...guest.ledger.entries()]).toEqual(before);
    expect(guest.check(module, td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it.each(methods)('$name: every bad range under GPAW 52 is INVALID_RANGE naming the argument', async (m) => {
    const { vmm, guest } = await bootGuest(52);
    expect(guest.gpaw).toBe(52);
    for (const c of badRanges52) {
      expectError(await guestError(() => m.call(guest, c.start, c.size)), 'INVALID_RANGE', c.argument);
    }
    expect(vmm.calls).toEqual([]);
  });

  it.each(methods.slice(0, 2))(
    '$name: a range beyond guest RAM is OUT_OF_MEMORY_MAP naming size',
    async (m) => {
      const { vmm, guest } = await bootGuest(48);
      expectError(
        await guestError(() => m.call(guest, MEMORY - PAGE, 2 * PAGE)),
        'OUT_OF_MEMORY_MAP',
        'size',
      );
      expectError(await guestError(() => m.call(guest, 0, MEMORY + PAGE)), 'OUT_OF_MEMORY_MAP', 'size');
      // Valid under GPAW 48 but far beyond the 4 MiB of RAM: the start itself is at fault.
      expectError(await guestError(() => m.call(guest, 2 ** 46, 2 * MiB)), 'OUT_OF_MEMORY_MAP', 'start');
      expect(vmm.calls).toEqual([]);
    },
  );

  it('setShared: a start at or beyond the end of guest RAM is OUT_OF_MEMORY_MAP naming start', async () => {
    const { vmm, guest } = await bootGuest(48);
    expectError(await guestError(() => guest.setShared(MEMORY, PAGE)), 'OUT_OF_MEMORY_MAP', 'start');
    expectError(await guestError(() => guest.setPrivate(2 ** 46, PAGE)), 'OUT_OF_MEMORY_MAP', 'start');
    expect(vmm.calls).toEqual([]);
  });

  it('the full RAM is a valid range: it converts to shared in one call', async () => {
    const { module, td, vmm, guest } = await bootGuest(48);
    expect(await guest.setShared(0, MEMORY)).toEqual({ kind: 'ok', mapGpaCalls: 1, acceptCalls: 0 });
    expect(vmm.calls.length).toBe(1);
    expect(guest.check(module, td.tdr)).toEqual([]);
  });
});

describe('setMemoryDecrypted / setMemoryEncrypted (address, numPages)', () => {
  const cases = [
    { address: 0x1001, numPages: 1, code: 'INVALID_RANGE', argument: 'address' },
    { address: 0x1000, numPages: 0, code: 'INVALID_RANGE', argument: 'numPages' },
    { address: 0x1000, numPages: -1, code: 'INVALID_RANGE', argument: 'numPages' },
    { address: 0x1000, numPages: 1.5, code: 'INVALID_RANGE', argument: 'numPages' },
    { address: 2 ** 47, numPages: 1, code: 'INVALID_RANGE', argument: 'address' },
    { address: 2 ** 47 - PAGE, numPages: 2, code: 'INVALID_RANGE', argument: 'numPages' },
    { address: MEMORY - PAGE, numPages: 2, code: 'OUT_OF_MEMORY_MAP', argument: 'numPages' },
  ] as const;

  it.each(cases)('($address, $numPages) → $code before any hypercall', async (c) => {
    const { vmm, guest } = await bootGuest(48);
    expect((await guestError(() => guest.setMemoryDecrypted(c.address, c.numPages))).code).toBe(c.code);
    expect((await guestError(() => guest.setMemoryEncrypted(c.address, c.numPages))).code).toBe(c.code);
    expect(vmm.calls).toEqual([]);
  });

  it.each(cases)('($address, $numPages) names the argument $argument', async (c) => {
    const { guest } = await bootGuest(48);
    expectError(await guestError(() => guest.setMemoryDecrypted(c.address, c.numPages)), c.code, c.argument);
    expectError(await guestError(() => guest.setMemoryEncrypted(c.address, c.numPages)), c.code, c.argument);
  });
});

describe('quarantined pages are never offered again', () => {
  it('a conversion touching a quarantined page is QUARANTINED before any hypercall', async () => {
    const start = 0x10_0000;
    const { module, td, vmm } = await setupGuestTd({
      vmm: { script: () => ({ r10: TdvmcallStatus.INVALID_OPERAND, r11: 0n }) },
    });
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: MEMORY });
    expect(await guest.setShared(start, 4 * PAGE)).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 1,
      pages: [{ start, end: start + 4 * PAGE, outcome: 'unknown' }],
    });
    expect(guest.ledger.stateOf(start + 3 * PAGE)).toBe('quarantined');
    expect(vmm.calls.length).toBe(1);
    const attempts = [
      () => guest.setShared(start, 4 * PAGE),
      () => guest.setPrivate(start, 4 * PAGE),
      () => guest.setPrivate(start - PAGE, 2 * PAGE),
      () => guest.setShared(start + 3 * PAGE, 2 * PAGE),
      () => guest.setMemoryDecrypted(start + PAGE, 1),
      () => guest.setMemoryEncrypted(0, 512),
    ];
    // The Linux-style names call their first argument `address`.
    const argumentOf = ['start', 'start', 'start', 'start', 'address', 'address'];
    for (const [i, attempt] of attempts.entries()) {
      expectError(await guestError(attempt), 'QUARANTINED', argumentOf[i] as string);
    }
    expect(vmm.calls.length).toBe(1);
    expect(guest.check(module, td.tdr)).toEqual([]);
    assertInvariants(module);
  });
});

describe('options', () => {
  it('TdGuest.boot: an unknown option is UNKNOWN_OPTION naming it', async () => {
    const { td, vmm } = await setupGuestTd();
    const options = { memoryBytes: MEMORY, chunkPages: 4 } as TdGuestOptions;
    expectError(await guestError(() => TdGuest.boot(td.guest(0), options)), 'UNKNOWN_OPTION', 'chunkPages');
    expect(vmm.calls).toEqual([]);
  });

  it('guestModule: an unknown option is UNKNOWN_OPTION naming it (trace comes from the container)', async () => {
    const withTrace = { memoryBytes: MEMORY, trace: new NullTraceSink() } as Parameters<
      typeof guestModule
    >[0];
    expectError(await guestError(() => guestModule(withTrace)), 'UNKNOWN_OPTION', 'trace');
    const typo = { memoryBytes: MEMORY, polcy: 'linux' } as Parameters<typeof guestModule>[0];
    expectError(await guestError(() => guestModule(typo)), 'UNKNOWN_OPTION', 'polcy');
  });

  it('TdGuest.boot: an unknown policy name is INVALID_OPTION naming policy', async () => {
    const { td } = await setupGuestTd();
    for (const policy of ['windows', '', 'Linux', 'STRICT']) {
      const options = { memoryBytes: MEMORY, policy } as TdGuestOptions;
      expectError(await guestError(() => TdGuest.boot(td.guest(0), options)), 'INVALID_OPTION', 'policy');
    }
  });

  it('TdGuest.boot: names inherited from Object.prototype are not policy presets', async () => {
    const { td } = await setupGuestTd();
    for (const policy of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      const options = { memoryBytes: MEMORY, policy } as TdGuestOptions;
      expectError(await guestError(() => TdGuest.boot(td.guest(0), options)), 'INVALID_OPTION', 'policy');
    }
  });

  it('guestModule: an unknown policy name is INVALID_OPTION when the guest is resolved', async () => {
    const { td } = await setupGuestTd();
    const container = new Container();
    container.bind(GuestIds.Cpu).toConstantValue(td.guest(0));
    await container.load(guestModule({ memoryBytes: MEMORY, policy: 'windows' as 'linux' }));
    expectError(await guestError(() => container.getAsync(GuestIds.Guest)), 'INVALID_OPTION', 'policy');
  });

  it('TdGuest.boot: a bad fuse is INVALID_OPTION naming fuse', async () => {
    const { td } = await setupGuestTd();
    for (const fuse of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expectError(
        await guestError(() => TdGuest.boot(td.guest(0), { memoryBytes: MEMORY, fuse })),
        'INVALID_OPTION',
        'fuse',
      );
    }
  });

  it('TdGuest.boot: bad memoryBytes and initialImage are INVALID_RANGE naming the option', async () => {
    const { td } = await setupGuestTd();
    const cpu = td.guest(0);
    for (const memoryBytes of [0, PAGE + 1, -PAGE, 2 ** 47 + PAGE]) {
      expectError(await guestError(() => TdGuest.boot(cpu, { memoryBytes })), 'INVALID_RANGE', 'memoryBytes');
    }
    const image = (initialImage: NonNullable<TdGuestOptions['initialImage']>) => () =>
      TdGuest.boot(cpu, { memoryBytes: MEMORY, initialImage });
    expectError(
      await guestError(
        image([
          { start: 0, size: PAGE },
          { start: 0x2001, size: PAGE },
        ]),
      ),
      'INVALID_RANGE',
      'initialImage[1].start',
    );
    expectError(await guestError(image([{ start: 0, size: 0 }])), 'INVALID_RANGE', 'initialImage[0].size');
    expectError(
      await guestError(image([{ start: MEMORY - PAGE, size: 2 * PAGE }])),
      'INVALID_RANGE',
      'initialImage[0].size',
    );
  });
});
