import {
  type BuiltTd,
  surveyTd,
  type TdCheckpoint,
  type TdxModule,
  type TdxModuleServices,
} from '@tdxsim/tdx-module';
import { KvmError } from './errors.js';
import type { KvmVmm } from './kvm-vmm.js';
import { type KvmVmmOptions, resolveKvmOptions } from './options.js';
import { VmState } from './vm-state.js';

/**
 * A {@link TdCheckpoint} that the KVM backend surveyed once and takes over at every restore: each restore is a new
 * module, the TD's handle and a {@link KvmVmm} whose tables (memslots, mirror S-EPT, shared EPT, attributes) start
 * as they do after its own build. Made by {@link KvmVmm.adoptCheckpoint}.
 */
export interface KvmTdCheckpoint {
  /** The checkpoint restored. */
  readonly checkpoint: TdCheckpoint;
  /** Whether the TD was finalized when checkpointed (KVM_TDX_FINALIZE_VM is then done; else the caller does it). */
  readonly finalized: boolean;
  /**
   * A new module in the checkpointed state (with `services`: a scheduler, a trace sink, a clock), the TD's handle and
   * the backend that took it over, not yet running (call `vmm.run()`). `options` replace those given to
   * {@link KvmVmm.adoptCheckpoint} (checked here, before anything is restored). Makes no SEAMCALL: every restore is
   * the state surveyed.
   */
  restore(
    services?: TdxModuleServices,
    options?: KvmVmmOptions,
  ): { readonly module: TdxModule; readonly td: BuiltTd; readonly vmm: KvmVmm };
}

/** Makes the backend object of a VM (KvmVmm's constructor is private to its class). */
export type MakeKvmVmm = (vm: VmState) => KvmVmm;

/**
 * Surveys `td` in `module` (see `surveyTd`) and throws a `TD_NOT_ADOPTABLE` KvmError naming the argument at fault if
 * KVM cannot take it over with empty tables; answers whether the TD is finalized.
 */
export async function checkAdoptable(module: TdxModule, td: BuiltTd): Promise<boolean> {
  const survey = await surveyTd(module, td);
  if (survey.refusal !== undefined)
    throw new KvmError('TD_NOT_ADOPTABLE', survey.refusal.message, survey.refusal.argument);
  return survey.finalized;
}

/** KvmVmm.adopt: the VM of a surveyed TD, runnable if it is finalized. */
export async function adoptTd(
  module: TdxModule,
  td: BuiltTd,
  options: KvmVmmOptions,
  make: MakeKvmVmm,
): Promise<KvmVmm> {
  const resolved = resolveKvmOptions(options);
  const finalized = await checkAdoptable(module, td);
  return make(adoptedVm(module, td, resolved, finalized));
}

/** KvmVmm.adoptCheckpoint: surveys one throwaway restore, then restores without SEAMCALLs. */
export async function adoptCheckpoint(
  checkpoint: TdCheckpoint,
  options: KvmVmmOptions,
  make: MakeKvmVmm,
): Promise<KvmTdCheckpoint> {
  if (typeof checkpoint !== 'object' || checkpoint === null || typeof checkpoint.restore !== 'function')
    throw new KvmError('INVALID_ARGUMENT', 'checkpoint must be a TdCheckpoint (checkpointTd)', 'checkpoint');
  resolveKvmOptions(options);
  // Surveyed on a restore of its own, so that the restores handed out start at the checkpoint's clock, untouched.
  const probe = checkpoint.restore();
  const finalized = await checkAdoptable(probe.module, probe.td);
  return {
    checkpoint,
    finalized,
    restore(services?: TdxModuleServices, override: KvmVmmOptions = options) {
      const resolved = resolveKvmOptions(override);
      const { module, td } = checkpoint.restore(services);
      return { module, td, vmm: make(adoptedVm(module, td, resolved, finalized)) };
    },
  };
}

function adoptedVm(
  module: TdxModule,
  td: BuiltTd,
  options: ReturnType<typeof resolveKvmOptions>,
  finalized: boolean,
): VmState {
  const vm = new VmState(module, td, options);
  if (finalized) vm.finalized();
  return vm;
}
