/**
 * The BackendGuard: each kind of backend fault ends the scenario with a BackendFaultError naming it, and the backend is
 * stopped; an honest backend runs under it unchanged.
 */
import { format } from 'node:util';
import { TdGuest } from '@tdxsim/guest';
import { KvmVmm, kvmVmm } from '@tdxsim/host-kvm';
import {
  type BuiltTd,
  composeTd,
  EeqType,
  encodeLeaf,
  type Gprs,
  HP_LOCK_TIMEOUT_FIELD_ID,
  makeGprs,
  PctScheduler,
  Reg,
  SeamcallLeaf,
  type TdExitEvent,
  TdvmcallStatus,
  TdxIds,
  TdxModule,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { Container } from 'inversify';
import { describe, expect, it, vi } from 'vitest';
import { MAX_LISTING_GAP, SHARED_IDLE_MS } from '../src/conformance/backend-guard.js';
import { BackendFaultError, BackendGuard, badRegister, scenarioTd, TestkitError } from '../src/index.js';

const MIB = 2 ** 20;

/**
 * Converts 64 KiB to shared on a two-vCPU TD under `guard`, and back to private unless `back` is false (a backend that
 * adds no private pages cannot complete that).
 */
async function convertUnder(
  guard: BackendGuard,
  vmm: Parameters<BackendGuard['module']>[0],
  back = true,
): Promise<string> {
  return guard.run(async () => {
    const { guest, threads } = await composeTd({
      vmm: guard.module(vmm),
      guest: (cpu, trace) => TdGuest.boot(cpu, { memoryBytes: 16 * MIB, policy: 'linux', trace }),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    guard.watchThreads(threads);
    const shared = await guest.setShared(MIB, 64 * 1024);
    if (!back) return shared.kind;
    const privateAgain = await guest.setPrivate(MIB, 64 * 1024);
    return `${shared.kind} ${privateAgain.kind}`;
  });
}

/**
 * Resolves once this thread has no timer pending that keeps it alive (a test runner's own come and go): a scenario
 * started then compares the guard's timer counts with its backend's alone. Waits in turns of 10 ms (whose own timer
 * has ended when it is checked); a timer that never ends is the test's timeout.
 */
async function untilNoTimerPending(): Promise<void> {
  while (process.getActiveResourcesInfo().includes('Timeout'))
    await new Promise((resolve) => setTimeout(resolve, 10));
}

/** Answers MapGPA with SUCCESS and does nothing else (it adds no private page). */
class BareVmm implements Vmm {
  constructor(
    readonly module: TdxModule,
    readonly td: BuiltTd,
  ) {}

  async onTdExit(_exit: TdExitEvent): Promise<Gprs | undefined> {
    return makeGprs({ r10: TdvmcallStatus.SUCCESS });
  }
}

/** Registers of `makeGprs()` with the values of `set`, whose read of register `index` throws. */
function throwingAt(index: number, set: Record<number, unknown>): unknown[] {
  const values: unknown[] = [...makeGprs()];
  for (const [at, value] of Object.entries(set)) values[Number(at)] = value;
  return new Proxy(values, {
    get(target, key, receiver) {
      if (key === String(index)) throw new Error(`the getter of register ${index} threw`);
      return Reflect.get(target, key, receiver);
    },
  });
}
/**
 * 16 registers (`base`'s, zeros by default) whose register `index` answers `first` to its first read and `later` to
 * every read after, and each register's count of reads.
 */
function changingRegisters(
  index: number,
  first: bigint,
  later: bigint,
  base: Gprs = makeGprs(),
): { regs: unknown[]; reads: number[] } {
  const reads = new Array<number>(16).fill(0);
  const regs = new Proxy([...base] as unknown[], {
    get(target, key, receiver) {
      const i = typeof key === 'string' && /^\d+$/.test(key) ? Number(key) : -1;
      if (i < 0 || i >= 16) return Reflect.get(target, key, receiver);
      reads[i] = (reads[i] ?? 0) + 1;
      return i === index ? (reads[i] === 1 ? first : later) : target[i];
    },
  });
  return { regs, reads };
}

const isMapGpa = (exit: TdExitEvent): boolean =>
  Number((exit.regs[Reg.RAX] ?? 0n) & 0xffffn) === VmExitReason.TDCALL;

/** Answers every MapGPA by removing a page never added, until it works: it never does (the same failing SEAMCALL). */
class LoopingVmm extends BareVmm {
  override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    if (!isMapGpa(exit)) return makeGprs();
    for (;;) {
      const result = await this.td.host.pageRemove(this.td.tdr, MIB, 0);
      if (result.status === 0n) return makeGprs({ r10: TdvmcallStatus.SUCCESS });
    }
  }
}

/** A module and the view of it a backend gets, from a guard of its own (one scenario). */
async function viewAndModule(): Promise<{ view: TdxModule; module: TdxModule }> {
  let seen: TdxModule | undefined;
  class SeeingVmm extends BareVmm {
    constructor(module: TdxModule, td: BuiltTd) {
      super(module, td);
      seen = module;
    }
  }
  const guard = new BackendGuard();
  let real: TdxModule | undefined;
  await guard.run(async () => {
    const handle = await composeTd({
      vmm: guard.module(SeeingVmm),
      guest: (cpu, trace) => TdGuest.boot(cpu, { memoryBytes: 16 * MIB, policy: 'linux', trace }),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    real = handle.module;
  });
  return { view: seen as TdxModule, module: real as TdxModule };
}

/**
 * The keys of the view the guard built before its accessors were shared, in its order: the module's own fields,
 * then its class's methods and accessors (nearest prototype first), then `seamcall` (strings before symbols, as
 * `Reflect.ownKeys` lists them).
 */
function keysOfAView(module: TdxModule): PropertyKey[] {
  const keys: PropertyKey[] = [...Reflect.ownKeys(module)];
  for (
    let proto: object | null = Object.getPrototypeOf(module) as object | null;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  )
    for (const key of Reflect.ownKeys(proto)) {
      if (key === 'constructor' || keys.includes(key)) continue;
      const { value, get, set } = Object.getOwnPropertyDescriptor(proto, key) as PropertyDescriptor;
      if (typeof value === 'function' || get !== undefined || set !== undefined) keys.push(key);
    }
  if (!keys.includes('seamcall')) keys.push('seamcall');
  return [...keys.filter((key) => typeof key !== 'symbol'), ...keys.filter((key) => typeof key === 'symbol')];
}

describe('BackendGuard', () => {
  it('an honest backend runs under it as it would without it', async () => {
    const guard = new BackendGuard({ stepBudget: 100_000 });
    expect(await convertUnder(guard, kvmVmm())).toBe('ok ok');
    expect(guard.fault).toBeUndefined();
    expect(guard.steps).toBeGreaterThan(10);
    expect(await guard.strayWork()).toBeUndefined();
  });

  it("the module a backend gets is an object of its class whose fields are the module's, not one whose prototype is the module", async () => {
    const { view: watched, module } = await viewAndModule();
    expect(watched).not.toBe(module);
    expect(watched).toBeInstanceOf(TdxModule);
    // A module made a prototype gets a map of its own in V8: every scenario's hot code would be compiled again.
    expect(Object.getPrototypeOf(watched)).toBe(Object.getPrototypeOf(module));
    expect(Object.getPrototypeOf(watched)).not.toBe(module);
    // Its own fields are read from the module; a backend's write lands on its view alone (as with the module as its
    // prototype), never on the module.
    module.droppedHostWrites = 3;
    expect(watched.droppedHostWrites).toBe(3);
    watched.droppedHostWrites = 5;
    expect([watched.droppedHostWrites, module.droppedHostWrites]).toEqual([5, 3]);
    // Exactly the keys the view had before its accessors were shared: the private field marking it is not seen.
    expect(Reflect.ownKeys(watched)).toEqual(keysOfAView(module));
    // Its methods and accessors act on the module.
    expect(watched.externalWork).toBe(module.externalWork);
  });

  it("every view shares its accessors' functions (one fast map in V8 for every scenario) and reads its own module", async () => {
    const first = await viewAndModule();
    const second = await viewAndModule();
    const accessors = Reflect.ownKeys(first.view).filter(
      (key) => Object.getOwnPropertyDescriptor(first.view, key)?.get !== undefined,
    );
    // The module's own fields and its prototype's accessors (externalWork, state, ...).
    expect(accessors).toEqual(
      expect.arrayContaining([...Reflect.ownKeys(first.module), 'externalWork', 'state']),
    );
    for (const key of accessors) {
      const a = Object.getOwnPropertyDescriptor(first.view, key) as PropertyDescriptor;
      const b = Object.getOwnPropertyDescriptor(second.view, key) as PropertyDescriptor;
      expect([a.get === b.get, a.set === b.set], String(key)).toEqual([true, true]);
    }
    // Shared, yet each view reads and writes its own module.
    expect(first.module.state).not.toBe(second.module.state);
    first.module.droppedHostWrites = 1;
    second.module.droppedHostWrites = 2;
    expect([first.view.droppedHostWrites, second.view.droppedHostWrites]).toEqual([1, 2]);
    expect(first.view.externalWork).toBe(first.module.externalWork);
    expect(second.view.externalWork).toBe(second.module.externalWork);
    expect(first.view.state).toBe(first.module.state);
    expect(second.view.state).toBe(second.module.state);
    first.view.droppedHostWrites = 7;
    expect([
      first.view.droppedHostWrites,
      first.module.droppedHostWrites,
      second.view.droppedHostWrites,
    ]).toEqual([7, 1, 2]);
  });

  it("an object made with a view as prototype reads the view's module and keeps its writes to itself", async () => {
    const { view, module } = await viewAndModule();
    const child = Object.create(view) as TdxModule;
    module.droppedHostWrites = 4;
    expect([child.droppedHostWrites, child.state, child.externalWork]).toEqual([
      4,
      module.state,
      module.externalWork,
    ]);
    // A write defines the field on the receiver, as an inherited writable data field would: not on the view.
    child.droppedHostWrites = 9;
    expect(Object.hasOwn(child, 'droppedHostWrites')).toBe(true);
    expect([child.droppedHostWrites, view.droppedHostWrites, module.droppedHostWrites]).toEqual([9, 4, 4]);
  });

  it("a view's members read through another receiver throw a TestkitError telling to read them on the view", async () => {
    const { view } = await viewAndModule();
    const state = Object.getOwnPropertyDescriptor(view, 'state')?.get as () => unknown;
    const field = Object.getOwnPropertyDescriptor(view, 'droppedHostWrites') as PropertyDescriptor;
    // A prototype chain that never ends (a Proxy whose prototype is itself) is walked a bounded number of links.
    const endless: object = new Proxy({}, { getPrototypeOf: () => endless });
    const reads: [string, () => unknown][] = [
      ['a Proxy of the view', () => new Proxy(view, {}).state],
      ['Reflect.get with another receiver', () => Reflect.get(view, 'state', {})],
      ['a detached getter called on another object', () => state.call({})],
      ['a getter called on undefined', () => state.call(undefined)],
      ['a getter called on a number', () => state.call(5)],
      ['a getter called on an endless prototype chain', () => state.call(endless)],
      ['a field written through another receiver', () => field.set?.call({}, 1)],
    ];
    for (const [what, read] of reads) {
      const error = (() => {
        try {
          read();
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(TestkitError.is(error), what).toBe(true);
      expect([(error as TestkitError).code, (error as TestkitError).argument], what).toEqual([
        'INVALID_BACKEND',
        'this',
      ]);
      expect((error as TestkitError).message, what).toMatch(/read members on the module the guard gave/);
    }
  });

  it('a backend that loops on one failing SEAMCALL is stopped after 64 identical failures', async () => {
    const guard = new BackendGuard({ maxIdenticalFailures: 64 });
    const error = await convertUnder(guard, LoopingVmm).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendFaultError);
    expect((error as BackendFaultError).fault.kind).toBe('stuck');
    expect((error as BackendFaultError).message).toMatch(
      /^the backend repeated the same failing SEAMCALL 64 times: TDH\.MEM\.PAGE\.REMOVE rcx=0x100000 rdx=0x[0-9a-f]+ r8=0x0 → /,
    );
    expect(guard.firstAvoidableError).toMatch(/^TDH\.MEM\.PAGE\.REMOVE /);
    // Stopped: its next SEAMCALL is refused.
    expect(guard.steps).toBeLessThan(200);
  });

  it('DEBUG=tdxsim:error enabled or disabled at run time: the fault and the calls before it logged, or nothing', async () => {
    const savedLog = createDebug.log;
    const savedNamespaces = createDebug.disable();
    const lines: string[] = [];
    createDebug.log = (...args: unknown[]) => {
      lines.push(format(...args));
    };
    try {
      const run = async (): Promise<void> => {
        const error = await convertUnder(new BackendGuard({ maxIdenticalFailures: 3 }), LoopingVmm).catch(
          (e: unknown) => e,
        );
        expect((error as BackendFaultError).fault.kind).toBe('stuck');
      };
      await run();
      expect(lines).toEqual([]);
      createDebug.enable('tdxsim:error');
      await run();
      expect(lines[0]).toMatch(
        /backend fault \(stuck\): the backend repeated the same failing SEAMCALL 3 times/,
      );
      // The calls just before the fault, the failing REMOVEs among them, as the guard kept them once enabled.
      expect(
        lines.filter((line) => /before it: TDH\.MEM\.PAGE\.REMOVE rcx=0x100000 .* → /.test(line)),
      ).toHaveLength(3);
      lines.length = 0;
      createDebug.disable();
      await run();
      expect(lines).toEqual([]);
    } finally {
      createDebug.log = savedLog;
      createDebug.disable();
      if (savedNamespaces !== '') createDebug.enable(savedNamespaces);
    }
  });

  it('registers that are not 64-bit bigints, in a reply or a SEAMCALL, are a typed error naming the register', async () => {
    class NumberReplyVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        const reply = makeGprs({ r10: TdvmcallStatus.SUCCESS });
        if (isMapGpa(exit)) (reply as unknown[])[Reg.R11] = '0x0';
        return reply;
      }
    }
    const reply = await convertUnder(new BackendGuard(), NumberReplyVmm).catch((e: unknown) => e);
    expect((reply as BackendFaultError).fault.kind).toBe('bad-registers');
    expect((reply as BackendFaultError).message).toMatch(/with R11 = "0x0" \(a string\), not a bigint/);

    class RawSeamcallVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (isMapGpa(exit)) {
          const regs = makeGprs();
          regs[Reg.RCX] = -1n;
          await this.module.seamcall(encodeLeaf(SeamcallLeaf.MEM_TRACK), regs);
        }
        return makeGprs({ r10: TdvmcallStatus.SUCCESS });
      }
    }
    const seamcall = await convertUnder(new BackendGuard(), RawSeamcallVmm).catch((e: unknown) => e);
    expect((seamcall as BackendFaultError).message).toBe('TDH.MEM.TRACK with RCX = -1, outside 0 … 2^64 − 1');
    expect(badRegister(makeGprs())).toBeUndefined();
    expect(badRegister([1n])).toEqual({
      register: 'regs',
      text: '1 registers instead of 16 (makeGprs builds all 16)',
    });
    expect(badRegister({})).toEqual({
      register: 'regs',
      text: 'a object instead of an array of 16 64-bit bigints',
    });
  });

  it('reads each register once: a reply answering one value to the first read and another later cannot pass a bad one', async () => {
    // A fresh copy of the guard's module: its register check takes another path once it met a register of 2^63 or
    // more, so each path is seen here in turn (the first two calls on the first, the last two on the other).
    vi.resetModules();
    const fresh = (await import('../src/conformance/backend-guard.js')).badRegister;
    const tooWide = 1n << 64n;
    const outside = { register: 'R11', text: `R11 = ${tooWide}, outside 0 … 2^64 − 1` };
    for (let pass = 0; pass < 2; pass++) {
      const goodFirst = changingRegisters(Reg.R11, 5n, tooWide);
      expect(fresh(goodFirst.regs)).toBeUndefined();
      expect(goodFirst.reads.every((n) => n <= 1)).toBe(true);
      expect(goodFirst.reads[Reg.R11]).toBe(1);
      const badFirst = changingRegisters(Reg.R11, tooWide, 5n);
      expect(fresh(badFirst.regs)).toEqual(outside);
      expect(badFirst.reads.every((n) => n <= 1)).toBe(true);
      expect(badFirst.reads[Reg.R11]).toBe(1);
      // A read that throws after a bad register: the bad register is named, as a check per register stops there.
      expect(fresh(throwingAt(Reg.R12, { [Reg.RBX]: 'x' }))).toEqual({
        register: 'RBX',
        text: 'RBX = "x" (a string), not a bigint',
      });
      // A read that throws with none bad before it: the read's error.
      expect(() => fresh(throwingAt(Reg.R12, {}))).toThrow('the getter of register 12 threw');
    }

    // Through a scenario: a reply's later reads are those of the next entry's check, which names the register.
    class ChangingReplyVmm extends BareVmm {
      constructor(
        module: TdxModule,
        td: BuiltTd,
        readonly first: bigint,
        readonly later: bigint,
      ) {
        super(module, td);
      }
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        const reply = makeGprs({ r10: TdvmcallStatus.SUCCESS });
        if (!isMapGpa(exit)) return reply;
        const { regs } = changingRegisters(Reg.R11, this.first, this.later, reply);
        return regs as Gprs;
      }
    }
    const faultOf = async (first: bigint, later: bigint): Promise<BackendFaultError> =>
      (await convertUnder(
        new BackendGuard(),
        class extends ChangingReplyVmm {
          constructor(module: TdxModule, td: BuiltTd) {
            super(module, td, first, later);
          }
        },
      ).catch((e: unknown) => e)) as BackendFaultError;
    const goodFirst = await faultOf(0n, tooWide);
    expect(goodFirst.fault.kind).toBe('bad-registers');
    expect(goodFirst.message).toMatch(
      /^TDH\.VP\.ENTER with R11 = 18446744073709551616, outside 0 … 2\^64 − 1$/,
    );
    const badFirst = await faultOf(tooWide, 0n);
    expect(badFirst.fault.kind).toBe('bad-registers');
    expect(badFirst.message).toMatch(
      /^onTdExit answered the TD exit of vCPU \d .* with R11 = 18446744073709551616, outside/,
    );
  });

  it("an explored run's quiet turns between SEAMCALLs do not have the thread's resources listed at every step", async () => {
    // Under an exploring scheduler half the turns of a 4K conversion see no SEAMCALL (a backend's own steps, the
    // second turn of each step): a listing at each of them cost more than the step. The countdown to the next
    // listing goes on across the SEAMCALLs: a few listings for the whole run, not one every other step.
    const scheduler = new PctScheduler({ seed: 3, maxSteps: 100_000 });
    const listings = vi.spyOn(process, 'getActiveResourcesInfo');
    try {
      const guard = new BackendGuard({ thread: 'dedicated', stepBudget: 100_000 });
      const kinds = await guard.run(async () => {
        const { guest, threads } = await composeTd({
          vmm: guard.module(kvmVmm()),
          guest: (cpu, trace) => TdGuest.boot(cpu, { memoryBytes: 16 * MIB, policy: 'linux', trace }),
          ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1, scheduler }),
        });
        guard.watchThreads(threads);
        const listed = listings.mock.calls.length;
        const shared = await guest.setShared(MIB, 256 * 1024);
        const privateAgain = await guest.setPrivate(MIB, 256 * 1024);
        return { kinds: `${shared.kind} ${privateAgain.kind}`, listed: listings.mock.calls.length - listed };
      });
      expect(kinds.kinds).toBe('ok ok');
      // 64 pages each way: hundreds of steps (four and more a page).
      expect(scheduler.stepCount).toBeGreaterThan(400);
      expect(kinds.listed).toBeLessThan(scheduler.stepCount / 20);
    } finally {
      listings.mockRestore();
      scheduler.dispose();
    }
  });

  it('an explored run left waiting on a TD exit is found idle within MAX_LISTING_GAP quiet turns of its last SEAMCALL', async () => {
    // The listing countdown goes on across an explored run's SEAMCALLs: after a conversion it is somewhere in a gap
    // of up to MAX_LISTING_GAP quiet turns, and the MapGPA of the next conversion, never answered, must be seen idle
    // at the end of that gap, not after a longer one: the check that sees the call, at most MAX_LISTING_GAP quiet
    // ones, a listing found idle and one more to agree. Turns counted as the immediates queued after the last
    // SEAMCALL (the guard's checks: nothing else runs then), never as time.
    const scheduler = new PctScheduler({ seed: 3, maxSteps: 100_000 });
    let silent = false;
    const onTdExit = KvmVmm.prototype.onTdExit;
    const silence = vi.spyOn(KvmVmm.prototype, 'onTdExit').mockImplementation(function (this: KvmVmm, exit) {
      return silent && isMapGpa(exit) ? new Promise(() => {}) : onTdExit.call(this, exit);
    });
    const guard = new BackendGuard({ thread: 'dedicated', wallClockMs: 3_600_000, stepBudget: 100_000 });
    let stepsSeen = -1;
    let turnsSinceCall = 0;
    const original = globalThis.setImmediate;
    const turns = vi.spyOn(globalThis, 'setImmediate').mockImplementation(((
      ...args: Parameters<typeof original>
    ) => {
      if (guard.steps !== stepsSeen) turnsSinceCall = 0;
      else turnsSinceCall++;
      stepsSeen = guard.steps;
      return original(...args);
    }) as typeof original);
    try {
      const outcome = await guard
        .run(async () => {
          const { guest, threads } = await composeTd({
            vmm: guard.module(kvmVmm()),
            guest: (cpu, trace) => TdGuest.boot(cpu, { memoryBytes: 16 * MIB, policy: 'linux', trace }),
            ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1, scheduler }),
          });
          guard.watchThreads(threads);
          await guest.setShared(MIB, 256 * 1024);
          await guest.setPrivate(MIB, 256 * 1024);
          silent = true;
          return guest.setShared(MIB, 256 * 1024);
        })
        .catch((e: unknown) => e);
      expect((outcome as BackendFaultError).fault.kind).toBe('no-answer');
      // Hundreds of steps before: the gaps reached MAX_LISTING_GAP (a bound of 100,000 let them grow: 110 turns here).
      expect(scheduler.stepCount).toBeGreaterThan(4 * MAX_LISTING_GAP);
      expect(turnsSinceCall).toBeGreaterThan(0);
      expect(turnsSinceCall).toBeLessThanOrEqual(MAX_LISTING_GAP + 3);
    } finally {
      turns.mockRestore();
      silence.mockRestore();
      scheduler.dispose();
    }
  });

  it('an exit handler that never answers is found as soon as nothing could answer it', async () => {
    class SilentVmm extends BareVmm {
      override onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        return isMapGpa(exit) ? new Promise(() => {}) : super.onTdExit(exit);
      }
    }
    // A dedicated thread, as a matrix worker: judged idle as soon as nothing of the scenario's is pending. The wall
    // clock's fallback is out of reach (an hour), so only the idle judgement can end this (no timing asserted).
    const error = await convertUnder(
      new BackendGuard({ thread: 'dedicated', wallClockMs: 3_600_000 }),
      SilentVmm,
    ).catch((e: unknown) => e);
    expect((error as BackendFaultError).fault.kind).toBe('no-answer');
    expect((error as BackendFaultError).message).toBe(
      'the backend never answered (waiting on the TD exit of vCPU 0: TDG.VP.VMCALL<MapGPA> R12=0x800000100000 R13=0x10000); nothing was left that could',
    );
  });

  it.each([
    ['then never answers: still found idle', false],
    ['then answers: waited for', true],
  ] as const)(
    'a handler spinning for hundreds of turns without a SEAMCALL (listings at gaps of up to 64 turns) %s',
    async (_, answers) => {
      // 300 turns, more than the doubling gaps take to reach 64 (1 + 3 + 7 + … + 63): the last listings while the
      // handler spins come 64 turns apart. A dedicated thread, the wall clock out of reach: only the idle judgement can
      // end the silent one, and it must not end the one that answers (no timing asserted).
      let turns = 0;
      class SpinningVmm extends BareVmm {
        override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
          if (!isMapGpa(exit)) return super.onTdExit(exit);
          for (; turns < 300; turns++) await new Promise((resolve) => setImmediate(resolve));
          return answers ? super.onTdExit(exit) : new Promise(() => {});
        }
      }
      const outcome = await convertUnder(
        new BackendGuard({ thread: 'dedicated', wallClockMs: 3_600_000 }),
        SpinningVmm,
        false,
      ).catch((e: unknown) => e);
      expect(turns).toBe(300);
      if (answers) expect(outcome).toBe('ok');
      else expect((outcome as BackendFaultError).fault.kind).toBe('no-answer');
    },
  );

  it('exits left waiting are named in the order they came, whichever vCPU', async () => {
    // The first MapGPA (vCPU 0) is answered, after the backend hands its own handler an exit of vCPU 1 that it never
    // answers; the second MapGPA (vCPU 0 again) is never answered: vCPU 1 waits since before vCPU 0 does.
    let mapGpas = 0;
    class LateVmm extends BareVmm {
      override onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (!isMapGpa(exit)) return super.onTdExit(exit);
        if (++mapGpas === 1) {
          void this.onTdExit({ ...exit, vcpuIndex: 1 });
          return super.onTdExit(exit);
        }
        return new Promise(() => {});
      }
    }
    const error = await convertUnder(
      new BackendGuard({ thread: 'dedicated', wallClockMs: 3_600_000 }),
      LateVmm,
    ).catch((e: unknown) => e);
    expect((error as BackendFaultError).fault.kind).toBe('no-answer');
    expect((error as BackendFaultError).message).toMatch(
      /^the backend never answered \(waiting on the TD exit of vCPU 1: TDG\.VP\.VMCALL<MapGPA> R12=0x800000100000 R13=0x10000; vCPU 0: TDG\.VP\.VMCALL<MapGPA> R12=0x100000 R13=0x10000\);/,
    );
  });

  it('an exit a backend hands its own handler for the same vCPU leaves the waiting exit described as it came', async () => {
    // The guard copies each exit into one array per vCPU; while the vCPU's exit still waits, the next one of that
    // vCPU (here the backend's own call) must go elsewhere, or the fault would name the second exit's registers.
    let mapGpas = 0;
    class SelfCallingVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (!isMapGpa(exit)) return super.onTdExit(exit);
        if (++mapGpas === 1) {
          const other = exit.regs.slice();
          other[Reg.R13] = 0x2000n;
          await this.onTdExit({ ...exit, regs: other });
          throw new Error('gave up');
        }
        return super.onTdExit(exit);
      }
    }
    const error = await convertUnder(new BackendGuard(), SelfCallingVmm).catch((e: unknown) => e);
    expect((error as BackendFaultError).fault.kind).toBe('threw');
    expect((error as BackendFaultError).message).toBe(
      'onTdExit threw on the TD exit of vCPU 0 (TDG.VP.VMCALL<MapGPA> R12=0x800000100000 R13=0x10000): Error: gave up',
    );
  });

  it('in a shared thread, another timer ending while the handler waits on its own does not make the scenario idle', async () => {
    // The guard counts the thread's timers by type: when one that was there before the scenario (here the test's, in
    // a test runner the runner's own) ends while the handler's is pending, the count is back to what it was. Idle
    // must last SHARED_IDLE_MS there, and the handler's timer fires first. Seen in full runs of the suite before: a
    // false "never answered", three times in a row.
    const other = setTimeout(() => {}, 5);
    class SlowVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (isMapGpa(exit)) await new Promise((resolve) => setTimeout(resolve, 60));
        return super.onTdExit(exit);
      }
    }
    expect(SHARED_IDLE_MS).toBeGreaterThan(60);
    expect(await convertUnder(new BackendGuard(), SlowVmm, false)).toBe('ok');
    clearTimeout(other);
  });

  it("timers of the thread's that ended during the scenario and came back at its end are not stray work", async () => {
    // The idle judgement forgets what of the thread's timers ended; stray work still compares with the start.
    let other = [setTimeout(() => {}, 5), setTimeout(() => {}, 6)];
    class SlowVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (isMapGpa(exit)) await new Promise((resolve) => setTimeout(resolve, 20));
        return super.onTdExit(exit);
      }
    }
    const guard = new BackendGuard();
    expect(await convertUnder(guard, SlowVmm, false)).toBe('ok');
    other = [setTimeout(() => {}, 50), setTimeout(() => {}, 50)];
    expect(await guard.strayWork()).toBeUndefined();
    for (const timer of other) clearTimeout(timer);
  });

  it('in a shared thread, a handler that never answers is still found idle, after SHARED_IDLE_MS', async () => {
    class SilentVmm extends BareVmm {
      override onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        return isMapGpa(exit) ? new Promise(() => {}) : super.onTdExit(exit);
      }
    }
    // The wall clock's fallback is far out of reach: only the idle judgement ends this (no timing asserted).
    const error = await convertUnder(new BackendGuard({ wallClockMs: 600_000 }), SilentVmm).catch(
      (e: unknown) => e,
    );
    expect((error as BackendFaultError).fault.kind).toBe('no-answer');
  });

  it('a handler waiting on a timer is waited for; the wall clock is the fallback', async () => {
    class SlowVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (isMapGpa(exit)) await new Promise((resolve) => setTimeout(resolve, 20));
        return super.onTdExit(exit);
      }
    }
    expect(await convertUnder(new BackendGuard(), SlowVmm, false)).toBe('ok');
    // The timers the backends below leave pending are cleared at the end: one firing during a later test would change
    // the thread's timer count that test's guard compares against.
    const pending: NodeJS.Timeout[] = [];
    class ForeverVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (isMapGpa(exit)) await new Promise((resolve) => pending.push(setTimeout(resolve, 60_000).unref()));
        return super.onTdExit(exit);
      }
    }
    const guard = new BackendGuard({ wallClockMs: 200, thread: 'dedicated' });
    // An unref'd timer keeps nothing alive: this one is found idle at once, before the wall clock.
    const idle = await convertUnder(guard, ForeverVmm, false).catch((e: unknown) => e);
    expect((idle as BackendFaultError).fault.kind).toBe('no-answer');
    class RefTimerVmm extends BareVmm {
      override async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
        if (isMapGpa(exit)) await new Promise((resolve) => pending.push(setTimeout(resolve, 5_000)));
        return super.onTdExit(exit);
      }
    }
    // In a thread shared with the test runner, whose own timers come and go, the wall clock decides.
    const timed = await convertUnder(new BackendGuard({ wallClockMs: 200 }), RefTimerVmm, false).catch(
      (e: unknown) => e,
    );
    expect((timed as BackendFaultError).fault.kind).toBe('timeout');
    expect((timed as BackendFaultError).message).toMatch(
      /^the scenario did not end within 200 ms \(wall clock\) \(waiting on the TD exit of vCPU 0: /,
    );
    for (const timer of pending) clearTimeout(timer);
  });

  it('a step budget stops a backend that keeps calling; timers left running are stray work', async () => {
    const budget = await convertUnder(new BackendGuard({ stepBudget: 20 }), kvmVmm()).catch(
      (e: unknown) => e,
    );
    expect((budget as BackendFaultError).message).toMatch(
      /^the backend made more than 20 SEAMCALLs, the scenario's budget/,
    );
    let timer: NodeJS.Timeout | undefined;
    class StrayVmm extends BareVmm {
      constructor(module: TdxModule, td: BuiltTd) {
        super(module, td);
        timer = setInterval(() => {}, 1000);
      }
    }
    // The guard counts the thread's timers without identity: one of vitest's pending when the scenario starts (its
    // 100 ms throttle of test reports, armed as this test started) that fires during it would hide the backend's
    // interval. Seen under load: the scenario above ran long enough to reach it. Start once vitest's have fired.
    await untilNoTimerPending();
    const guard = new BackendGuard();
    expect(await convertUnder(guard, StrayVmm, false)).toBe('ok');
    const stray = await guard.strayWork();
    clearInterval(timer);
    expect(stray?.message).toBe(
      'the backend left 1 timer running after the scenario ended (a host thread or timer that never stops keeps the process alive)',
    );
    expect(guard.fault).toBe(stray);
  });

  it('an EPT-violation exit repeats when its GPA and ACCEPT level repeat, whatever else RDX holds', async () => {
    // The guard compares RDX itself first and decodes the ACCEPT level only when RDX differs: the same verdicts as
    // comparing the decoded levels every time.
    const guard = new BackendGuard({ maxIdenticalFailures: 4 });
    const { hosted, td } = await composeTd({
      vmm: guard.module(BareVmm),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    const eptExit = (gpa: number, rdx: bigint): TdExitEvent => ({
      tdr: td.tdr,
      tdvpr: td.tdvprs[0] as number,
      vcpuIndex: 0,
      regs: makeGprs({ rax: BigInt(VmExitReason.EPT_VIOLATION), rdx, r8: BigInt(gpa) }),
    });
    const accept = (level: number, other = 0n): bigint =>
      BigInt(EeqType.ACCEPT) | (BigInt(level) << 32n) | (other << 8n);
    const answers = async (exits: TdExitEvent[]): Promise<string> => {
      for (const exit of exits) {
        try {
          await hosted.vmm.onTdExit(exit);
        } catch (error) {
          return (error as Error).message;
        }
      }
      return 'answered';
    };
    // A new GPA each time, or the same GPA at another ACCEPT level each time: never the same exit.
    expect(await answers([0, 1, 2, 3, 4, 5].map((page) => eptExit(page * 4096, accept(0))))).toBe('answered');
    expect(await answers([0, 1, 0, 1, 0, 1].map((level) => eptExit(0x5000, accept(level))))).toBe('answered');
    // An ACCEPT and a plain violation at one GPA differ (level -1 for the latter).
    expect(
      await answers(
        [accept(0), BigInt(EeqType.NONE), accept(0), 0n, accept(0)].map((rdx) => eptExit(0x6000, rdx)),
      ),
    ).toBe('answered');
    expect(guard.fault).toBeUndefined();
    // The same GPA and level with other RDX bits changing: the same exit, stuck at the fourth.
    const same = await answers([1n, 2n, 3n, 4n].map((other) => eptExit(0x7000, accept(1, other))));
    expect(same).toMatch(/^onTdExit refused: the scenario stopped this backend/);
    expect(guard.fault?.kind).toBe('stuck');
    expect(guard.fault?.message).toBe(
      'the backend answered the same TD exit 4 times in a row without resolving it: vCPU 0 (EPT violation (ACCEPT, level 1) at 0x7000)',
    );
  });

  it('a successful SEAMCALL between two identical EPT-violation exits starts their count again; a failing one does not', async () => {
    const guard = new BackendGuard({ maxIdenticalFailures: 3 });
    const { hosted, td } = await composeTd({
      vmm: guard.module(BareVmm),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    const vmm = hosted.vmm as BareVmm;
    const exit: TdExitEvent = {
      tdr: td.tdr,
      tdvpr: td.tdvprs[0] as number,
      vcpuIndex: 0,
      regs: makeGprs({ rax: BigInt(VmExitReason.EPT_VIOLATION), rdx: BigInt(EeqType.ACCEPT), r8: 0x9000n }),
    };
    // TDH.MNG.RD of the TD (SUCCESS) and TDH.MEM.PAGE.REMOVE of a page never added (an error status), through the
    // module the backend holds: what the guard counts as progress and what it does not.
    const mngRd = makeGprs({ rcx: BigInt(td.tdr), rdx: HP_LOCK_TIMEOUT_FIELD_ID });
    const read = async (): Promise<bigint> =>
      (await vmm.module.seamcall(encodeLeaf(SeamcallLeaf.MNG_RD), mngRd))[Reg.RAX] as bigint;
    const remove = async (): Promise<bigint> =>
      (
        await vmm.module.seamcall(
          encodeLeaf(SeamcallLeaf.MEM_PAGE_REMOVE),
          makeGprs({ rcx: 0x9000n, rdx: BigInt(td.tdr) }),
        )
      )[Reg.RAX] as bigint;
    for (let turn = 0; turn < 4; turn++) {
      await vmm.onTdExit(exit);
      await vmm.onTdExit(exit);
      expect(await read()).toBe(0n);
    }
    expect(guard.fault).toBeUndefined();
    await vmm.onTdExit(exit);
    await vmm.onTdExit(exit);
    expect(await remove()).toBeGreaterThanOrEqual(1n << 63n);
    await expect(vmm.onTdExit(exit)).rejects.toThrow(/^onTdExit refused: the scenario stopped this backend/);
    expect(guard.fault?.kind).toBe('stuck');
  });

  it("a SEAMCALL reads each of the backend's registers once: the module runs on the values the guard checked", async () => {
    const { hosted, td } = await composeTd({
      vmm: new BackendGuard().module(BareVmm),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    const vmm = hosted.vmm as BareVmm;
    // TDH.MNG.RD of the TD whose RCX answers the TDR to its first read and a TDR that is no TD's to any later one.
    const base = makeGprs({ rcx: BigInt(td.tdr), rdx: HP_LOCK_TIMEOUT_FIELD_ID });
    const { regs, reads } = changingRegisters(Reg.RCX, BigInt(td.tdr), 0n, base);
    const out = await vmm.module.seamcall(encodeLeaf(SeamcallLeaf.MNG_RD), regs as Gprs);
    expect(out[Reg.RAX]).toBe(0n);
    expect(reads).toEqual(new Array(16).fill(1));
  });

  it("the backend's view of the module has no unchecked SEAMCALL entry: nothing on it bypasses the guard", async () => {
    const { hosted } = await composeTd({
      vmm: new BackendGuard().module(BareVmm),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    const view = (hosted.vmm as BareVmm).module as unknown as Record<string, unknown>;
    expect('seamcallOwned' in view).toBe(false);
    const seamcallEntries = [...Object.getOwnPropertyNames(TdxModule.prototype), ...Object.keys(view)].filter(
      (name) => /seamcall/i.test(name),
    );
    expect(new Set(seamcallEntries)).toEqual(new Set(['seamcall']));
  });

  it('under nested guards each guard counts the SEAMCALL step', async () => {
    const outer = new BackendGuard();
    const inner = new BackendGuard();
    const { hosted, td } = await composeTd({
      vmm: outer.module(inner.module(BareVmm)),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    const vmm = hosted.vmm as BareVmm;
    const before = [outer.steps, inner.steps];
    const out = await vmm.module.seamcall(
      encodeLeaf(SeamcallLeaf.MNG_RD),
      makeGprs({ rcx: BigInt(td.tdr), rdx: HP_LOCK_TIMEOUT_FIELD_ID }),
    );
    expect(out[Reg.RAX]).toBe(0n);
    expect([outer.steps - (before[0] as number), inner.steps - (before[1] as number)]).toEqual([1, 1]);
  });

  it('a TdxModule subclass overriding seamcall has its override run under the guard', async () => {
    const calls: bigint[] = [];
    class CountingModule extends TdxModule {
      override seamcall(rax: bigint, input: readonly bigint[]): Gprs | Promise<Gprs> {
        calls.push(rax);
        return super.seamcall(rax, input);
      }
    }
    const guard = new BackendGuard();
    let view: TdxModule | undefined;
    const container = new Container();
    container.load(
      guard.module(async (module: TdxModule) => {
        view = module;
        return { td: { tdr: 0, tdvprs: [] }, vmm: { module, onTdExit: async () => undefined } } as never;
      }),
    );
    const factory = container.get(TdxIds.VmmFactory);
    await factory(new CountingModule(), {} as never);
    const out = await (view as TdxModule).seamcall(
      encodeLeaf(SeamcallLeaf.MNG_RD),
      makeGprs({ rcx: 0x1000n }),
    );
    expect(calls).toEqual([encodeLeaf(SeamcallLeaf.MNG_RD)]);
    expect(out[Reg.RAX]).not.toBe(0n);
    expect(guard.steps).toBe(1);
  });

  it("each vCPU's repeated EPT-violation exits are counted on their own, whichever vCPU exited last", async () => {
    const guard = new BackendGuard({ maxIdenticalFailures: 3 });
    const { hosted, td } = await composeTd({
      vmm: guard.module(BareVmm),
      ...scenarioTd({ memoryBytes: 16 * MIB, seed: 1 }),
    });
    expect(td.tdvprs.length).toBeGreaterThanOrEqual(2);
    const eptExit = (vcpuIndex: number, gpa: bigint): TdExitEvent => ({
      tdr: td.tdr,
      tdvpr: td.tdvprs[vcpuIndex] as number,
      vcpuIndex,
      regs: makeGprs({ rax: BigInt(VmExitReason.EPT_VIOLATION), rdx: BigInt(EeqType.ACCEPT), r8: gpa }),
    });
    // vCPU 0 at 0xa000 and vCPU 1 at 0xb000 in turn: each repeats its own exit, the third time is stuck.
    const turns = [eptExit(0, 0xa000n), eptExit(1, 0xb000n), eptExit(0, 0xa000n), eptExit(1, 0xb000n)];
    for (const exit of turns) await hosted.vmm.onTdExit(exit);
    expect(guard.fault).toBeUndefined();
    await expect(hosted.vmm.onTdExit(eptExit(0, 0xa000n))).rejects.toThrow(/^onTdExit refused/);
    expect(guard.fault?.message).toBe(
      'the backend answered the same TD exit 3 times in a row without resolving it: vCPU 0 (EPT violation (ACCEPT, level 0) at 0xa000)',
    );
  });

  it('refuses options that make no sense', () => {
    expect(() => new BackendGuard({ maxIdenticalFailures: 0 })).toThrow(TestkitError);
    expect(() => new BackendGuard({ stepBudget: 0 })).toThrow(/stepBudget/);
    expect(() => new BackendGuard({ wallClockMs: -1 })).toThrow(/wallClockMs/);
  });
});
