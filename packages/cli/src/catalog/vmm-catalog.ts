import { HypervVmm, type HypervVmmOptions, hypervVmm } from '@tdxsim/host-hyperv';
import { KvmVmm, type KvmVmmOptions, kvmVmm } from '@tdxsim/host-kvm';
import type { TdCheckpoint } from '@tdxsim/tdx-module';
import type { AdoptedCheckpoint } from '@tdxsim/testkit';
import type { ContainerModule } from 'inversify';

/** One VMM the matrix can run a guest against. */
export interface VmmEntry {
  /** The name used by `--vmm` and in scenario ids. */
  readonly name: string;
  /** `honest`: a backend that keeps the GHCI contract; `hostile`: one that lies or cheats on purpose; `custom`: loaded by `--backend`. */
  readonly kind: 'honest' | 'hostile' | 'custom';
  readonly description: string;
  /** The backend's ContainerModule for `composeTd`, seeded for the scenario. */
  module(seed: number): ContainerModule;
  /**
   * How the backend that `module(seed)` builds takes over a checkpoint of a TD it built, as it would have after its
   * own build (e.g. `KvmVmm.adoptCheckpoint(checkpoint, options)` with the options `module(seed)` gives `kvmVmm`).
   * With it, `tdxsim explore` builds each race's TD once and restores it per schedule; without it (hostile and users'
   * backends) it builds per schedule. Both give the same schedules and reports.
   */
  adopt?(seed: number): (checkpoint: TdCheckpoint) => Promise<AdoptedCheckpoint>;
  /**
   * The backend this one differs from only in how it answers MapGPA (e.g. `hyperv-2048` from `hyperv-512`). A workload
   * that makes no MapGPA call runs the same on both, so the default matrix runs it on the original only.
   */
  readonly mapGpaVariantOf?: string;
  /**
   * Whether it backs private memory with 4K pages (merged KVM's default): a GiB-sized workload then costs an exit and
   * an AUG per 4K page, seconds of CPU. Only a hint for the order the matrix runs scenarios in.
   */
  readonly privateAt4k?: boolean;
  /** Where a custom backend was loaded from (so that `replay` can load it again). */
  readonly file?: string;
}

/** The honest backends this project ships: KVM with and without pending events, Hyper-V at three chunk sizes (multiples of 512 pages: smaller
 * chunks make Hyper-V back a 1 GiB buffer with 262,144 4K pages, too slow for the default matrix). */
export function honestVmms(): VmmEntry[] {
  const hyperv = (chunkPages: number): VmmEntry => ({
    name: `hyperv-${chunkPages}`,
    kind: 'honest',
    ...(chunkPages === 512 ? {} : { mapGpaVariantOf: 'hyperv-512' }),
    description: `Hyper-V-like: at most ${chunkPages} pages per MapGPA call, RETRY with R11 = the next GPA`,
    module: (seed) => hypervVmm({ chunkPages, seed }),
    adopt: (seed) => adoptHyperv({ chunkPages, seed }),
  });
  return [
    {
      name: 'kvm',
      kind: 'honest',
      description: 'KVM-like: MapGPA in 2 MiB chunks, lazy AUG, BLOCK → TRACK → kick → REMOVE',
      privateAt4k: true,
      module: (seed) => kvmVmm({ seed }),
      adopt: (seed) => adoptKvm({ seed }),
    },
    {
      name: 'kvm-events',
      kind: 'honest',
      mapGpaVariantOf: 'kvm',
      description: 'KVM-like with an event pending after half of the chunks: RETRY with R11 = the next GPA',
      privateAt4k: true,
      module: (seed) => kvmVmm({ seed, pendingEventRate: 0.5 }),
      adopt: (seed) => adoptKvm({ seed, pendingEventRate: 0.5 }),
    },
    hyperv(512),
    hyperv(2048),
    hyperv(8192),
  ];
}

const adoptKvm = (options: KvmVmmOptions) => (checkpoint: TdCheckpoint) =>
  KvmVmm.adoptCheckpoint(checkpoint, options);
const adoptHyperv = (options: HypervVmmOptions) => (checkpoint: TdCheckpoint) =>
  HypervVmm.adoptCheckpoint(checkpoint, options);
