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
import { HypervError, HypervVmm } from '../src/index.js';

const TDMR = { base: 2 ** 36, size: 2 ** 30 };
const MIB = 2 ** 20;

async function built(build: Parameters<typeof buildTd>[1] = { vcpus: 2 }) {
  const module = new TdxModule({ tdmr: TDMR });
  return { module, td: await buildTd(module, build) };
}

/** A workload that maps private and shared pages (eagerly, chunk by chunk): what a dirty TD has seen. */
async function workload(vmm: HypervVmm, module: TdxModule): Promise<string[]> {
  const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 8 * MIB, policy: 'strict' });
  const seen = [
    (await guest.acceptAll()).kind,
    (await guest.setShared(MIB, 2 * MIB)).kind,
    (await guest.setPrivate(MIB, MIB)).kind,
  ];
  expect(guest.check(module, vmm.td.tdr)).toEqual([]);
  expect(checkVmmView(module, vmm.td.tdr, vmm.view())).toEqual([]);
  assertInvariants(module);
  return seen;
}

async function refusal(module: TdxModule, td: BuiltTd): Promise<[string, string | undefined]> {
  const error = await HypervVmm.adopt(module, td).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!HypervError.is(error)) throw new Error(`expected a HypervError, got ${String(error)}`);
  return [error.code, error.argument];
}

describe('HypervVmm.adopt: the Hyper-V backend takes over a TD it did not build', () => {
  it('a TD built by buildTd runs a workload as one it built itself does', async () => {
    const own = new TdxModule({ tdmr: TDMR });
    const hypervBuilt = await HypervVmm.create(own, { chunkPages: 4 }, { vcpus: 2 });
    const adoptedTd = await built();
    const adopted = await HypervVmm.adopt(adoptedTd.module, adoptedTd.td, { chunkPages: 4 });
    hypervBuilt.run();
    adopted.run();
    expect(await workload(adopted, adoptedTd.module)).toEqual(await workload(hypervBuilt, own));
  });

  it('refuses a TD not finalized, a wrong GPA width, another module’s handle, and mapped memory', async () => {
    const draft = await built({ vcpus: 1, skipFinalize: true });
    expect(await refusal(draft.module, draft.td)).toEqual(['TD_NOT_ADOPTABLE', 'td']);
    const narrow = await built({ vcpus: 1 });
    expect(await refusal(narrow.module, { ...narrow.td, gpaw: 52, pwl: 4 })).toEqual([
      'TD_NOT_ADOPTABLE',
      'td.gpaw',
    ]);
    const checkpoint = checkpointTd(narrow.module, narrow.td);
    expect(await refusal(checkpoint.restore().module, checkpoint.restore().td)).toEqual([
      'TD_NOT_ADOPTABLE',
      'td',
    ]);
    const image = await built({ vcpus: 1, initialImage: [{ gpa: 0, bytes: new Uint8Array(4096) }] });
    expect(await refusal(image.module, image.td)).toEqual(['TD_NOT_ADOPTABLE', 'td']);
  });

  it('adoptCheckpoint: each restore starts pristine, whatever the restores before it did', async () => {
    const { module, td } = await built();
    const adopted = await HypervVmm.adoptCheckpoint(checkpointTd(module, td), { chunkPages: 4 });
    const first = adopted.restore();
    first.vmm.run();
    const seen = await workload(first.vmm, first.module);
    expect([...first.vmm.view().privateMappings()].length).toBeGreaterThan(0);
    const second = adopted.restore();
    expect([...second.vmm.view().privateMappings()]).toEqual([]);
    expect(second.module.sharedEpt(second.td.tdr).size).toBe(0);
    second.vmm.run();
    expect(await workload(second.vmm, second.module)).toEqual(seen);
    expect(() => adopted.restore(undefined, { chunkPages: 0 })).toThrow(HypervError);
  });
});
