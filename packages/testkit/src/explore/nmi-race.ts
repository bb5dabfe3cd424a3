import { tdgVpInfo } from '@tdxsim/guest';
import {
  encodeLeaf,
  type HostCpu,
  injectNmis,
  makeGprs,
  type NmiBlockingAtSeamret,
  TdcallLeaf,
  TdvmcallSubfunction,
  VmcallExposure,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import { exploredHostedTd } from '../restore/hosted-td.js';
import type { ExploredRun, ExploredTd, ExploreProperty, ExploreScenario } from './explore-types.js';

/** The TDMR the scenario's module manages: 1 GiB at 16 GiB, as every race scenario's. */
const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;

/** What {@link nmisAroundTdExits} returns: the TD, what each side saw, and the vCPU whose host processor took the NMIs. */
export interface NmiRaceOutcome extends ExploredTd {
  readonly outcomes: readonly string[];
  readonly tdvpr: number;
}

/** Options of {@link nmisAroundTdExits}. */
export interface NmiRaceOptions {
  /** The module's NMI blocking at SEAMRET (default: module 1.5's `'restore'`). */
  readonly nmiBlockingAtSeamret?: NmiBlockingAtSeamret;
  /** NMI sources, one NMI each, raised in this order (default `['perf', 'ipi']`: NMI X and NMI X + 1). */
  readonly sources?: readonly string[];
  /** Rounds of guest work, each a TDCALL (TDG.VP.INFO) and a TD exit (TDG.VP.VMCALL<GetTdVmCallInfo>). Default 3. */
  readonly rounds?: number;
  /** Yield points of the NMI thread before each NMI (`injectNmis`' delay). Default 2. */
  readonly delay?: number;
}

/**
 * NMIs around TD exits (seed thread 003): one vCPU runs guest code — TDCALLs, during which the processor is in SEAM
 * root, and VMCALLs, each a TD exit and a SEAMRET — while NMIs from distinct sources reach its host processor from a
 * thread of their own (`injectNmis`), each at a moment the scheduler chooses. An NMI that arrives in the TD makes an
 * NMI exit that consumes it; the backend must run the host's NMI handler for it (KVM: vmx_handle_nmi right after
 * TDH.VP.ENTER). What the host processor recorded — which NMI each handler run was for, what it serviced, unknown
 * NMIs — is judged by {@link nmisHandledInOrder}. Under module 1.5 behaviour an explorer finds NMI X + 1 handled before
 * NMI X (latched in SEAM root, delivered at SEAMRET) and the unknown NMI it leaves; with `nmiBlockingAtSeamret:
 * 'keep-blocked-after-nmi-exit'` it finds neither.
 */
export function nmisAroundTdExits(
  backend: VmmFactory,
  options: NmiRaceOptions = {},
): ExploreScenario<NmiRaceOutcome> {
  const sources = options.sources ?? ['perf', 'ipi'];
  const rounds = options.rounds ?? 3;
  const delay = options.delay ?? 2;
  return async (ctx) => {
    const { module, hosted } = await exploredHostedTd(
      ctx,
      backend,
      { tdmr: TDMR, guestStuckLimit: 6, nmiBlockingAtSeamret: options.nmiBlockingAtSeamret ?? 'restore' },
      { gpaw: 48, vcpus: 1 },
    );
    for (const thread of hosted.run()) thread.catch(() => {});
    const td = ctx.watch({ module, tdr: hosted.td.tdr, vmm: hosted.vmm });
    const cpu = hosted.td.guest(0);
    const guest = async (): Promise<string> => {
      const statuses: string[] = [];
      for (let round = 0; round < rounds; round++) {
        statuses.push(`info ${(await tdgVpInfo(cpu)).rax}`);
        const out = await cpu.tdcall(
          encodeLeaf(TdcallLeaf.VP_VMCALL),
          makeGprs({ rcx: VmcallExposure.LINUX, r11: TdvmcallSubfunction.GET_TD_VM_CALL_INFO, r12: 0n }),
        );
        statuses.push(`vmcall r10=0x${(out[10] as bigint).toString(16)}`);
      }
      return statuses.join(',');
    };
    const nmis = injectNmis(
      module,
      hosted.td,
      sources.map((source) => ({ source, delay })),
    ).then((raised) => raised.map((nmi) => `NMI ${nmi.nmi} (${nmi.source}): ${nmi.disposition}`).join(','));
    const outcomes = await Promise.all([guest(), nmis]);
    return { ...td, outcomes, tdvpr: hosted.td.tdvprs[0] as number };
  };
}

/** One line per run of the NMI handler: `NMI 1 (ipi) at seamret: serviced perf, ipi`. */
export function describeNmiHandlings(cpu: HostCpu): string[] {
  return cpu.handlings.map(
    (run) =>
      `NMI ${run.nmi} (${run.source}) entered by ${run.entry}: ${run.outcome}${run.serviced.length > 0 ? `, serviced ${run.serviced.join(', ')}` : ''}`,
  );
}

/**
 * The property of {@link nmisAroundTdExits}, checked at quiescence: the host's NMI handler ran for the NMIs in the
 * order they arrived (none handled before an earlier one), it never met an unknown NMI, and no NMI an NMI exit
 * consumed was left unhandled by the backend.
 */
export const nmisHandledInOrder: ExploreProperty<ExploredTd> = (run: ExploredRun<ExploredTd>) => {
  const tdvpr = (run.td as Partial<NmiRaceOutcome>).tdvpr;
  if (tdvpr === undefined) return 'not a run of nmisAroundTdExits: no tdvpr';
  const cpu = run.td.module.hostCpu(tdvpr);
  const problems: string[] = [];
  for (const { earlier, later } of cpu.inversions())
    problems.push(`NMI ${later} was handled before NMI ${earlier}, which arrived first`);
  if (cpu.unknownNmis > 0) problems.push(`${cpu.unknownNmis} unknown NMI(s)`);
  const lost = [...cpu.unhandledExits, ...(cpu.pendingExitNmi === undefined ? [] : [cpu.pendingExitNmi])];
  for (const nmi of lost)
    problems.push(`NMI ${nmi.nmi} (${nmi.source}) was consumed by an NMI exit and never handled`);
  if (problems.length === 0) return undefined;
  return `${problems.join('; ')} — the handler ran: ${describeNmiHandlings(cpu).join('; ')}`;
};
