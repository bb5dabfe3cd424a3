import {
  type BuiltTd,
  surveyTd,
  type TdCheckpoint,
  type TdxModule,
  type TdxModuleServices,
} from '@tdxsim/tdx-module';
import { HypervError } from './errors.js';
import type { HypervVmm } from './hyperv-vmm.js';
import { type HypervVmmOptions, resolveHypervOptions } from './options.js';

/**
 * A {@link TdCheckpoint} that the Hyper-V backend surveyed once and takes over at every restore: each restore is a
 * new module, the TD's handle and a {@link HypervVmm} whose record of what it mapped starts empty, as after its own
 * build. Made by {@link HypervVmm.adoptCheckpoint}.
 */
export interface HypervTdCheckpoint {
  /** The checkpoint restored. */
  readonly checkpoint: TdCheckpoint;
  /**
   * A new module in the checkpointed state (with `services`: a scheduler, a trace sink, a clock), the TD's handle and
   * the backend that took it over, not yet running (call `vmm.run()`). `options` replace those given to
   * {@link HypervVmm.adoptCheckpoint} (checked here, before anything is restored). Makes no SEAMCALL.
   */
  restore(
    services?: TdxModuleServices,
    options?: HypervVmmOptions,
  ): { readonly module: TdxModule; readonly td: BuiltTd; readonly vmm: HypervVmm };
}

/** Makes the backend object (HypervVmm's constructor is private to its class). */
export type MakeHypervVmm = (
  module: TdxModule,
  td: BuiltTd,
  options: Required<HypervVmmOptions>,
) => HypervVmm;

/**
 * Surveys `td` in `module` (see `surveyTd`) and throws a `TD_NOT_ADOPTABLE` HypervError naming the argument at fault
 * if the backend cannot take it over with an empty record. A TD not yet finalized is refused too: the backend
 * finalizes its own builds and has no step of its own to do it later.
 */
export async function checkAdoptable(module: TdxModule, td: BuiltTd): Promise<void> {
  const survey = await surveyTd(module, td);
  if (survey.refusal !== undefined)
    throw new HypervError('TD_NOT_ADOPTABLE', survey.refusal.message, survey.refusal.argument);
  if (!survey.finalized)
    throw new HypervError(
      'TD_NOT_ADOPTABLE',
      'the TD is not finalized (TDH.MR.FINALIZE): the Hyper-V backend adopts only a runnable TD',
      'td',
    );
}

/** HypervVmm.adopt: the backend of a surveyed TD. */
export async function adoptTd(
  module: TdxModule,
  td: BuiltTd,
  options: HypervVmmOptions,
  make: MakeHypervVmm,
): Promise<HypervVmm> {
  const resolved = resolveHypervOptions(options);
  await checkAdoptable(module, td);
  return make(module, td, resolved);
}

/** HypervVmm.adoptCheckpoint: surveys one throwaway restore, then restores without SEAMCALLs. */
export async function adoptCheckpoint(
  checkpoint: TdCheckpoint,
  options: HypervVmmOptions,
  make: MakeHypervVmm,
): Promise<HypervTdCheckpoint> {
  if (typeof checkpoint !== 'object' || checkpoint === null || typeof checkpoint.restore !== 'function')
    throw new HypervError(
      'INVALID_ARGUMENT',
      'checkpoint must be a TdCheckpoint (checkpointTd)',
      'checkpoint',
    );
  resolveHypervOptions(options);
  // Surveyed on a restore of its own, so that the restores handed out start at the checkpoint's clock, untouched.
  const probe = checkpoint.restore();
  await checkAdoptable(probe.module, probe.td);
  return {
    checkpoint,
    restore(services?: TdxModuleServices, override: HypervVmmOptions = options) {
      const resolved = resolveHypervOptions(override);
      const { module, td } = checkpoint.restore(services);
      return { module, td, vmm: make(module, td, resolved) };
    },
  };
}
