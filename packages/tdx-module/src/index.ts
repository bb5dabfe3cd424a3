/**
 * @tdxsim/tdx-module: a model of the Intel TDX module (1.5) for testing guest memory conversion: the ABI, the
 * Secure-EPT, PAMT, locks with host priority, the TD life cycle, SEAMCALL and TDCALL flows.
 */

export {
  EeqType,
  EXIT_QUALIFICATION_WRITE,
  INTERRUPTION_INFO_VALID,
  InterruptionType,
  interruptionInfo,
  NMI_VECTOR,
  VmExitReason,
  type VmExitReasonName,
} from './abi/exit-reason.js';
export {
  FATAL_ERROR_GPA_VALID,
  FATAL_ERROR_MESSAGE_REGISTERS,
  GetQuoteBuffer,
  TDX_HYPERCALL_STANDARD,
  TdvmcallInfoLeaf1R11,
  TdvmcallStatus,
  type TdvmcallStatusName,
  TdvmcallSubfunction,
  type TdvmcallSubfunctionName,
  tdvmcallStatusName,
  VmcallExposure,
} from './abi/ghci.js';
export {
  assertGpaw,
  type Gpaw,
  isSharedGpa,
  isValidPrivateGpa,
  isWithinGpaw,
  MAX_PA,
  sharedBit,
  toPrivateGpa,
  toSharedGpa,
} from './abi/gpa.js';
export {
  ACCEPT_ALLOWED_SEPT_STATES,
  ACCEPT_LEVELS,
  ALLOWED_SEPT_STATES,
  OP_STATE_GATES,
  PAGE_INFO_LEVELS,
  TLB_TRACKING_OP_STATES,
} from './abi/leaf-rules.js';
export {
  decodeLeaf,
  encodeLeaf,
  SeamcallLeaf,
  type SeamcallLeafName,
  seamcallLeafName,
  TdcallLeaf,
  type TdcallLeafName,
  tdcallLeafName,
} from './abi/leaves.js';
export { mapGpaRequestError } from './abi/map-gpa-request.js';
export { OperandId, type OperandIdName, operandIdName } from './abi/operand-id.js';
export { checkPageInfo, type DecodedPageInfo, decodePageInfo, encodePageInfo } from './abi/page-info.js';
export {
  levelLabel,
  PAGE_SIZE_1G,
  PAGE_SIZE_2M,
  PAGE_SIZE_4K,
  PageLevel,
  pageSizeOf,
  pagesAtLevel,
} from './abi/page-level.js';
export { PamtPageType, pamtPageTypeName } from './abi/page-type.js';
export {
  ALL_SEPT_STATES,
  SeptState,
  SeptStateGroup,
  type SeptStateInfo,
  type SeptStateName,
  septStateInfo,
} from './abi/sept-state.js';
// ABI (usable on its own)
export {
  isStatus,
  LinuxSoftwareStatus,
  STATUS_CODE_MASK,
  statusBase,
  statusDetail,
  TdxStatus,
  type TdxStatusName,
  withDetail,
} from './abi/status-codes.js';
export { type DecodedStatus, decodeStatus, formatStatus } from './abi/status-decoder.js';
export {
  HP_LOCK_TIMEOUT_DEFAULT_US,
  HP_LOCK_TIMEOUT_FIELD_ID,
  HP_LOCK_TIMEOUT_MAX_US,
  HP_LOCK_TIMEOUT_MIN_US,
  LifecycleState,
  OpState,
  opStateName,
  TD_PARAMS_SIZE,
  TdAttribute,
  TdConfigFlag,
  TdParamsOffset,
  ZERO_STEP_GPA_LIST_SIZE,
  ZERO_STEP_THRESHOLD,
} from './abi/td-state.js';
export { numberToU64, registerNumber, u64High32, u64Low32 } from './abi/u64.js';
export { VCPU_STATE_DETAILS_FIELD_ID, VCPU_STATE_DETAILS_VMXIP } from './abi/vcpu-fields.js';
// Errors
export {
  type ArgumentChecks,
  type ArgumentErrorCode,
  type ArgumentFailure,
  argumentChecks,
  showArgument,
} from './argument-checks.js';
export {
  type BackendSource,
  backendName,
  type GuestClass,
  type GuestFactory,
  type GuestSource,
  toVmmModule,
  type VmmClass,
} from './backend-source.js';
export { ModuleCheckpoint } from './checkpoint/module-checkpoint.js';
export {
  type ComposedTd,
  type ComposeOptions,
  composeTd,
  type HostedTd,
  type VmmFactory,
} from './compose.js';
// Wiring
export { TdxIds, type TdxModuleContainerOptions, tdxModule } from './container.js';
// The host processor: NMIs around TD exits
export {
  HostCpu,
  type HostCpuMode,
  type NmiBlockingAtSeamret,
  type NmiDisposition,
} from './cpu/host-cpu.js';
export {
  type NmiArrival,
  type NmiEntry,
  NmiHandler,
  type NmiHandling,
  type NmiOutcome,
} from './cpu/nmi-handler.js';
export { injectNmis, type NmiScriptEntry, type RaisedNmi } from './cpu/nmi-injector.js';
export { ADDRESS_LIMIT, TdxSimError, type TdxSimErrorCode } from './errors.js';
export type { GuestAccessResult } from './flows/guest-access.js';
// Host helpers
export { encodeTdParams, HostSeamcalls, type SeamcallResult, type TdParams } from './host/host-seamcalls.js';
// Utilities shared by the guest and host packages
export { RangeMap } from './host/range-map.js';
export { ensureSeptTables } from './host/sept-tables.js';
export { type BuildTdOptions, type BuiltTd, buildTd } from './host/td-builder.js';
export { checkpointTd, type TdCheckpoint } from './host/td-checkpoint.js';
export { surveyTd, type TdSurvey, type TdSurveyRefusal } from './host/td-survey.js';
// Inspection
export {
  assertInvariants,
  checkInvariants,
  type InvariantViolation,
  VMM_OWNED_INVARIANT_RULES,
} from './inspect/invariants.js';
export { snapshotState } from './inspect/snapshot.js';
export { checkVmmView, type ViewMismatch } from './inspect/view-check.js';
export {
  HP_EXCL,
  HP_FLAG,
  HP_READER,
  hpReleaseExclusive,
  hpReleaseShared,
  hpTryExclusive,
  hpTryPromote,
  hpTryShared,
} from './locks/host-priority-lock.js';
// Locks (pure rules, for documentation and tests of the lock tables)
export { type LockAttempt, type LockCaller, LockResult } from './locks/lock-result.js';
export { PlainSharexLock } from './locks/plain-lock.js';
export { SEPT_HP, septEntryTryLock, septEntryUnlock, TDEL } from './locks/sept-entry-lock.js';
export { HostPageAllocator, type HostPageRun } from './memory/host-page-allocator.js';
export type { TdmrOptions } from './memory/physical-memory.js';
export { assertSameCopy, loadedCopies, type PackageCopy } from './package-copy.js';
export {
  copyGprs,
  formatGprs,
  type Gprs,
  type GprValues,
  makeGprs,
  normalizeGprs,
  Reg,
  type RegName,
} from './registers.js';
// Schedulers that explore interleavings
export {
  ControlledScheduler,
  type ControlledSchedulerOptions,
  type WaitingFlow,
} from './schedule/controlled-scheduler.js';
export { PctScheduler, type PctSchedulerOptions } from './schedule/pct-scheduler.js';
export { RandomScheduler, type RandomSchedulerOptions } from './schedule/random-scheduler.js';
export { ReplayScheduler } from './schedule/replay-scheduler.js';
export {
  assertSchedule,
  describePoint,
  formatSchedule,
  MAX_DECISION,
  parseSchedule,
  type Schedule,
  type ScheduleStep,
} from './schedule/schedule.js';
// Services
export { type Clock, type CostModel, DEFAULT_COSTS, VirtualClock } from './services/clock.js';
export { type Rng, SeededRng } from './services/rng.js';
export {
  RunToCompletionScheduler,
  type Scheduler,
  SteppingScheduler,
  type YieldPoint,
} from './services/scheduler.js';
export {
  type FieldTraceSink,
  formatTraceRegs,
  hexTraceRegs,
  MemoryTraceSink,
  NullTraceSink,
  seamcallTraceEvent,
  type TraceEvent,
  type TraceRegs,
  type TraceSink,
  tdcallTraceEvent,
  tdExitTraceEvent,
  traceStatusText,
} from './services/trace.js';
export { SharedEpt, type SharedEptRun } from './td/shared-ept.js';
// The model
export {
  GuestCpu,
  LOCAL_TIMER_VECTOR,
  RESCHEDULE_VECTOR,
  seamcallChecked,
  TdxModule,
  type TdxModuleOptions,
  type TdxModuleServices,
} from './tdx-module.js';
export { runVcpu, type SeamcallPort, type TdExitEvent, type Vmm, withTdvpr } from './vmm-port.js';
export type { ViewedMapping, VmmView } from './vmm-view.js';
