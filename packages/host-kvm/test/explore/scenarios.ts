import { tdgAccept } from '@tdxsim/guest';
import { MirrorEntry } from '../../src/index.js';
import { MIB2, PAGE, type Scenario } from './harness.js';

// The race scenarios of the KVM concurrency issue, each with two vCPUs and one guest per vCPU (each guest's ledger is
// checked on the pages it owns). R is a 2M region whose pages the setup accepts (guest 0; one 2M leaf with huge
// pages); R2 is a 2M region nothing has touched, whose page table is missing, so faults there race to link it.

const R = MIB2;
const R2 = 2 * MIB2;
const RAM = 3 * MIB2;

/** Fails the run when an operation of the race did not end as it must. */
function must(what: string, result: { kind: string }): void {
  if (result.kind !== 'ok')
    throw new Error(
      `${what} ended ${JSON.stringify(result, (_key, value) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value))}`,
    );
}

/**
 * Guest 0 accepts what the race will convert: with huge pages the whole of R (a 2M ACCEPT: one 2M leaf), else only
 * `window` of it at 4K (the pages the race touches and their neighbours: cheaper than 512 exits per schedule).
 */
function acceptR(window: readonly [number, number]): Scenario['setup'] {
  return async (env) => {
    const [start, end] = env.kvm.options.hugePages ? [R, R + MIB2] : window;
    must('setup: accept in R', await env.guests[0].setPrivate(start, end - start));
  };
}

export const scenarios: readonly Scenario[] = [
  {
    name: 'two vCPUs converting pages of one 2M region',
    ramBytes: RAM,
    setup: acceptR([R, R + 0x1_0000]),
    async race({ guests: [g0, g1] }) {
      const a = R + 0x3000;
      const b = R + 0x10_0000;
      await Promise.all([
        (async () => {
          must('vCPU 0 to shared', await g0.setShared(a, 2 * PAGE));
          must('vCPU 0 back', await g0.setPrivate(a, 2 * PAGE));
        })(),
        (async () => {
          must('vCPU 1 to shared', await g1.setShared(b, 2 * PAGE));
          must('vCPU 1 back', await g1.setPrivate(b, 2 * PAGE));
        })(),
      ]);
      return {
        ledger: [
          [
            [R, b],
            [b + 2 * PAGE, R + MIB2],
          ],
          [[b, b + 2 * PAGE]],
        ],
      };
    },
  },
  {
    name: 'faults racing a zap',
    ramBytes: RAM,
    setup: acceptR([R + 0x7_0000, R + 0xa_0000]),
    async race({ guests: [g0, g1] }) {
      const zapped = R + 0x8_0000;
      await Promise.all([
        (async () => {
          // Lazy accepts: each first touch is an EPT-violation exit that AUGs (and links R2's table).
          for (const gpa of [R2 + 0x1000, R2 + 0x2000, R2 + 0x1_0000])
            must('vCPU 1 touch', await g1.read(gpa, 8));
        })(),
        (async () => must('vCPU 0 zap', await g0.setShared(zapped, 4 * PAGE)))(),
      ]);
      return {
        ledger: [[[R, R + MIB2]], [[R2, R2 + MIB2]]],
      };
    },
  },
  {
    name: 'two zaps at once',
    ramBytes: RAM,
    async setup(env) {
      await acceptR([R, R + 0x1_0000])(env);
      must('setup: guest 1 accepts in R2', await env.guests[1].setPrivate(R2 + 0x4000, 4 * PAGE));
    },
    async race({ guests: [g0, g1] }) {
      await Promise.all([
        (async () => must('vCPU 0 zap', await g0.setShared(R + 0x2000, 3 * PAGE)))(),
        (async () => must('vCPU 1 zap', await g1.setShared(R2 + 0x4000, 4 * PAGE)))(),
      ]);
      return { ledger: [[[R, R + MIB2]], [[R2, R2 + MIB2]]] };
    },
  },
  {
    name: 'an accept racing a zap',
    ramBytes: RAM,
    setup: async () => undefined,
    async race({ kvm, guests: [, g1] }) {
      // vCPU 0 accepts X (2M-first, as a strict guest does: the whole of R, else X at 4K) while vCPU 1 converts X
      // to shared: the accept may hold X's S-EPT entry when KVM blocks it (BUSY, kick, one retry), or fault after the
      // attribute change (KVM_EXIT_MEMORY_FAULT: userspace makes X private again). Either way KVM's attributes and
      // mirror must agree with the module at the end.
      const x = R;
      const cpu0 = kvm.td.guest(0);
      await Promise.all([
        (async () => {
          const huge = await tdgAccept(cpu0, x, 1);
          if (huge !== 0n) await tdgAccept(cpu0, x, 0);
        })(),
        (async () => must('vCPU 1 to shared', await g1.setShared(x, PAGE)))(),
      ]);
      return {
        ledger: [[], []],
        extra: () => {
          const shared = kvm.attributes.get(x) === 'shared';
          const leaf = kvm.mirror.walk(x, 0);
          const mapped = leaf.entry === MirrorEntry.PRESENT || leaf.entry === MirrorEntry.BLOCKED;
          return shared && mapped ? ['X is shared in the attributes but KVM still maps it private'] : [];
        },
      };
    },
  },
  {
    name: 'concurrent lazy accepts with a conversion',
    ramBytes: RAM,
    setup: acceptR([R + 0x1f_0000, R + MIB2]),
    async race({ guests: [g0, g1] }) {
      const converted = R + 0x1f_f000;
      await Promise.all([
        (async () => {
          must('vCPU 0 touch', await g0.write(R2 + 0x5000, new Uint8Array([1])));
          must('vCPU 0 convert', await g0.setShared(converted, PAGE));
        })(),
        (async () => {
          must('vCPU 1 touch', await g1.write(R2 + 0x6000, new Uint8Array([2])));
          must('vCPU 1 touch', await g1.read(R2 + 0x7000, 1));
        })(),
      ]);
      return {
        ledger: [
          [
            [R, R + MIB2],
            [R2 + 0x5000, R2 + 0x6000],
          ],
          [[R2 + 0x6000, R2 + 0x8000]],
        ],
      };
    },
  },
];
