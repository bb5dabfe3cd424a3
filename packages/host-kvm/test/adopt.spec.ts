import { TdGuest } from '@tdxsim/guest';
import {
  assertInvariants,
  type BuiltTd,
  buildTd,
  checkpointTd,
  checkVmmView,
  TdxModule,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmError, KvmVmm } from '../src/index.js';

const TDMR = { base: 2 ** 36, size: 2 ** 30 };
const MIB = 2 ** 20;

async function built(build: Parameters<typeof buildTd>[1] = { vcpus: 2 }) {
  const module = new TdxModule({ tdmr: TDMR });
  return { module, td: await buildTd(module, build) };
}

/** A workload that maps private and shared pages through faults, zaps and MapGPA: what a dirty TD has seen. */
async function workload(kvm: KvmVmm, module: TdxModule): Promise<string[]> {
  const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 8 * MIB, policy: 'strict' });
  const seen = [
    (await guest.acceptAll()).kind,
    (await guest.setShared(MIB, 2 * MIB)).kind,
    (await guest.write(MIB + 4096, new Uint8Array([7]))).kind,
    (await guest.setPrivate(MIB, MIB)).kind,
  ];
  expect(guest.check(module, kvm.td.tdr)).toEqual([]);
  expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
  assertInvariants(module);
  return seen;
}

/** The refusal `adopt` throws, as [code, argument]. */
async function refusal(module: TdxModule, td: BuiltTd): Promise<[string, string | undefined]> {
  const error = await KvmVmm.adopt(module, td).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!KvmError.is(error)) throw new Error(`expected a KvmError, got ${String(error)}`);
  return [error.code, error.argument];
}

describe('KvmVmm.adopt: KVM takes over a TD it did not build', () => {
  it('a TD built by buildTd runs a workload as one KVM built itself does, counters aside', async () => {
    const own = { module: new TdxModule({ tdmr: TDMR }) };
    const kvmBuilt = await KvmVmm.create(own.module, {}, { vcpus: 2 });
    const adoptedTd = await built();
    const adopted = await KvmVmm.adopt(adoptedTd.module, adoptedTd.td);
    expect(adopted.memslots).toEqual(kvmBuilt.memslots);
    expect(adopted.mirror.privateMappings()).toEqual([]);
    kvmBuilt.run();
    adopted.run();
    expect(await workload(adopted, adoptedTd.module)).toEqual(await workload(kvmBuilt, own.module));
  });

  it('a TD not yet finalized is adopted not runnable; KVM_TDX_FINALIZE_VM then finalizes it', async () => {
    const { module, td } = await built({ vcpus: 1, skipFinalize: true });
    const kvm = await KvmVmm.adopt(module, td);
    expect(await kvm.finalize()).toBe('ok');
    expect(await kvm.finalize()).toBe('EINVAL');
  });

  it('refuses a handle whose GPA width is not the TD’s', async () => {
    const narrow = await built({ gpaw: 48 });
    expect(await refusal(narrow.module, { ...narrow.td, gpaw: 52, pwl: 4 })).toEqual([
      'TD_NOT_ADOPTABLE',
      'td.gpaw',
    ]);
    const wide = await built({ gpaw: 52 });
    expect(await refusal(wide.module, { ...wide.td, gpaw: 48, pwl: 3 })).toEqual([
      'TD_NOT_ADOPTABLE',
      'td.gpaw',
    ]);
  });

  it('refuses the handle of another module (a twin restored from the same checkpoint), and vCPUs that are not there', async () => {
    const { module, td } = await built();
    const checkpoint = checkpointTd(module, td);
    const a = checkpoint.restore();
    const b = checkpoint.restore();
    expect(await refusal(a.module, b.td)).toEqual(['TD_NOT_ADOPTABLE', 'td']);
    expect(await refusal(a.module, { ...a.td, tdvprs: [a.td.tdvprs[0] as number, a.td.tdr] })).toEqual([
      'TD_NOT_ADOPTABLE',
      'td.tdvprs[1]',
    ]);
    expect(await refusal(a.module, { ...a.td, tdvprs: [] })).toEqual(['TD_NOT_ADOPTABLE', 'td']);
  });

  it('refuses vCPUs of another TD of the same module, a vCPU named twice, and a TD being torn down', async () => {
    const module = new TdxModule({ tdmr: TDMR });
    const first = await buildTd(module, { vcpus: 2 });
    const second = await buildTd(module, { vcpus: 2 }, first.allocator);
    // TDH.VP.RD takes either TD's TDVPR: only the PAMT owner tells the second TD's vCPU apart.
    const mixed = { ...first, tdvprs: [first.tdvprs[0] as number, second.tdvprs[1] as number] };
    const error = await KvmVmm.adopt(module, mixed).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TD_NOT_ADOPTABLE', argument: 'td.tdvprs[1]' });
    expect(String((error as Error).message)).toContain(
      `belongs to the TD of TDR 0x${second.tdr.toString(16)}`,
    );
    const twice = { ...first, tdvprs: [first.tdvprs[0] as number, first.tdvprs[0] as number] };
    expect(await refusal(module, twice)).toEqual(['TD_NOT_ADOPTABLE', 'td']);
    // Both handles as built are adoptable: the refusals came from the mixing, not from two TDs sharing a module.
    expect((await KvmVmm.adopt(module, second)).td.tdr).toBe(second.tdr);
    for (const tdvpr of first.tdvprs) expect((await first.host.vpFlush(tdvpr)).status).toBe(0n);
    expect((await first.host.mngVpFlushDone(first.tdr)).status).toBe(0n);
    expect(await refusal(module, first)).toEqual(['TD_NOT_ADOPTABLE', 'td.tdr']);
    expect((await first.host.mngKeyFreeId(first.tdr)).status).toBe(0n);
    expect(await refusal(module, first)).toEqual(['TD_NOT_ADOPTABLE', 'td.tdr']);
  });

  it('refuses a TD with private memory mapped, or shared-EPT mappings, that its tables would not know', async () => {
    const image = await built({ vcpus: 1, initialImage: [{ gpa: 0x10_0000, bytes: new Uint8Array(4096) }] });
    const error = await KvmVmm.adopt(image.module, image.td).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TD_NOT_ADOPTABLE', argument: 'td' });
    expect(String((error as Error).message)).toMatch(/private memory is mapped at 0x0/);
    const shared = await built({ vcpus: 1 });
    shared.module.sharedEpt(shared.td.tdr).map(0x20_0000, shared.td.allocator.alloc4k());
    expect(await refusal(shared.module, shared.td)).toEqual(['TD_NOT_ADOPTABLE', 'td']);
  });

  it('adopts a TD of a module whose SEAMCALLs cost no time (the other-module probe is then not made)', async () => {
    const module = new TdxModule({ tdmr: TDMR, costs: { seamcallNs: 0, tdcallNs: 0, tdExitNs: 0 } });
    const kvm = await KvmVmm.adopt(module, await buildTd(module, { vcpus: 1 }));
    kvm.run();
    expect((await kvm.td.guest(0).read(2 ** 47 + 0x10_0000, 4)).kind).toBe('ok');
  });

  it('refuses what is not a module or a handle before any SEAMCALL, and checks its options', async () => {
    const { module, td } = await built({ vcpus: 1 });
    expect(await refusal({} as TdxModule, td)).toEqual(['TD_NOT_ADOPTABLE', 'module']);
    expect(await refusal(module, { ...td, tdr: 3 })).toEqual(['TD_NOT_ADOPTABLE', 'td']);
    await expect(KvmVmm.adopt(module, td, { nope: 1 } as never)).rejects.toMatchObject({
      code: 'UNKNOWN_OPTION',
    });
  });
});

describe('KvmVmm.adoptCheckpoint: one survey, a backend per restore', () => {
  it('each restore starts pristine, whatever the restores before it did', async () => {
    const { module, td } = await built();
    const adopted = await KvmVmm.adoptCheckpoint(checkpointTd(module, td), { seed: 3 });
    expect(adopted.finalized).toBe(true);
    const first = adopted.restore();
    first.vmm.run();
    const seen = await workload(first.vmm, first.module);
    // The first restore is dirty now: pages accepted, some shared.
    expect(first.vmm.mirror.privateMappings().length).toBeGreaterThan(0);
    const second = adopted.restore();
    expect(second.vmm.mirror.privateMappings()).toEqual([]);
    expect(second.module.sharedEpt(second.td.tdr).size).toBe(0);
    // Adoptable as it stands: nothing mapped, the TD finalized.
    await expect(KvmVmm.adopt(second.module, second.td)).resolves.toBeInstanceOf(KvmVmm);
    const third = adopted.restore(undefined, { seed: 3 });
    third.vmm.run();
    expect(await workload(third.vmm, third.module)).toEqual(seen);
    expect(third.vmm.counters).toEqual(first.vmm.counters);
  });

  it('checks the options of a restore before restoring, and refuses what is not a checkpoint', async () => {
    const { module, td } = await built({ vcpus: 1 });
    const adopted = await KvmVmm.adoptCheckpoint(checkpointTd(module, td));
    expect(() => adopted.restore(undefined, { mmuLock: 'nope' } as never)).toThrow(KvmError);
    await expect(KvmVmm.adoptCheckpoint({} as never)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'checkpoint',
    });
  });
});
