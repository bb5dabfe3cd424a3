/**
 * @tdxsim/testkit: hostile VMM backends, fast-check arbitraries of VMM behaviour, guest safety properties, a
 * conformance kit for VMM backends, a fuzz campaign and schedule exploration (`exploreSchedules`). This entry never imports vitest (the CLI runs it in plain
 * Node); vitest helpers are in `@tdxsim/testkit/vitest`.
 */

// The backend shapes moved to @tdxsim/tdx-module (composeTd takes them); re-exported for the testkit's users.
export { type BackendSource, backendName, toVmmModule, type VmmClass } from '@tdxsim/tdx-module';
export { safetyWorkload } from './arbitraries/safety-workload-arbitrary.js';
export {
  type BehaviourArbitraryOptions,
  convertChoice,
  honestBehaviour,
  hostileBehaviour,
  mapGpaStep,
  r11Choice,
  sideEffects,
  statusChoice,
  vmmBehaviour,
} from './arbitraries/vmm-behaviour-arbitraries.js';
export { type BuggyVmm, buggyVmm, buggyVmms } from './backends/buggy/buggy-vmms.js';
export { type BuggyKvmVmm, kvmWithoutMmuLock } from './backends/buggy/kvm-without-mmu-lock.js';
export { MirrorVmm, type MirrorVmmOptions } from './backends/buggy/mirror-vmm.js';
export { HonestCore } from './backends/honest-core.js';
export { type HostileVmm, hostileVmm, hostileVmms } from './backends/hostile-vmms.js';
export { ScriptedVmm, type ScriptedVmmOptions, type ScriptedVmmRecord } from './backends/scripted-vmm.js';
export { scriptedVmm, scriptedVmmFactory } from './backends/scripted-vmm-module.js';
export { acknowledgedPages } from './behaviour/acknowledged-pages.js';
export { parseBehaviour } from './behaviour/parse-behaviour.js';
export { type MapGpaRequest, type ResolvedStep, resolveStep } from './behaviour/resolve-step.js';
export {
  type ConvertChoice,
  chunkStep,
  formatBehaviour,
  type GhciStatusName,
  type Hex64,
  HONEST_BEHAVIOUR,
  HONEST_STEP,
  type MapGpaStep,
  NO_PROGRESS_STEP,
  type R11Choice,
  SIDE_EFFECTS,
  type SideEffect,
  type StatusChoice,
  type VmmBehaviour,
} from './behaviour/vmm-behaviour.js';
export { avoidableSeamcallError, isTlbTrackingError } from './conformance/avoidable-seamcall-error.js';
export {
  type BackendFault,
  BackendFaultError,
  type BackendFaultKind,
  BackendGuard,
  type BackendGuardOptions,
  badRegister,
} from './conformance/backend-guard.js';
export {
  CONFORMANCE_RULES,
  type ConformanceCheck,
  type ConformanceRuleId,
} from './conformance/conformance-rules.js';
export { describeExit, describeReply } from './conformance/describe-exit.js';
export { MapGpaObserver, type ObservedTd } from './conformance/map-gpa-observer.js';
export { type ConformanceOptions, runConformance } from './conformance/run-conformance.js';
export { policyGuest, type ScenarioGuest, type ScenarioGuestOptions } from './conformance/scenario-guest.js';
export {
  SCENARIO_SCHEDULERS,
  type ScenarioSchedulerName,
  scenarioScheduler,
} from './conformance/scenario-scheduler.js';
export {
  SCENARIO_GPAW,
  SCENARIO_VCPUS,
  type ScenarioTdOptions,
  scenarioStepBudget,
  scenarioTd,
} from './conformance/scenario-td.js';
export { accept4g } from './conformance/workloads/accept-4g.js';
export { churn, churnWorkload } from './conformance/workloads/churn.js';
export {
  ConversionRounds,
  type RoundItem,
  splitAcrossVcpus,
} from './conformance/workloads/conversion-rounds.js';
export { dmaSmall } from './conformance/workloads/dma-small.js';
export { swiotlb1g } from './conformance/workloads/swiotlb-1g.js';
export { formatBytes, type Workload, type WorkloadContext } from './conformance/workloads/workload.js';
export { WORKLOADS } from './conformance/workloads/workloads.js';
export { TestkitError, type TestkitErrorCode } from './errors.js';
export {
  exploreSchedules,
  type ReplayOptions,
  type ReplayResult,
  replaySchedule,
  scheduleSeed,
} from './explore/explore-schedules.js';
export type {
  ExploreContext,
  ExploredRun,
  ExploredTd,
  ExploreFailure,
  ExploreFailureKind,
  ExploreOptions,
  ExploreProgress,
  ExploreProperty,
  ExploreResult,
  ExploreScenario,
} from './explore/explore-types.js';
export { EXPLORE_FAILURE_KINDS } from './explore/explore-types.js';
export {
  describeChoices,
  formatExploreFailure,
  formatTraceEvent,
  traceText,
} from './explore/format-report.js';
export {
  type GuestRaceScenario,
  guestAcceptRacingZap,
  guestConversionRacingFault,
  guestLazyAcceptsRacingVcpu,
  guestRaceScenarios,
  guestRaces,
  guestRoundTripRacingHost,
} from './explore/guest-race-scenarios.js';
export {
  describeNmiHandlings,
  type NmiRaceOptions,
  type NmiRaceOutcome,
  nmisAroundTdExits,
  nmisHandledInOrder,
} from './explore/nmi-race.js';
export {
  acceptRacingZap,
  concurrentLazyAccepts,
  faultRacingZap,
  type HostInitiatedConversions,
  hasHostInitiatedConversions,
  hostConversionRacingAccesses,
  pageAddContention,
  type RaceOutcome,
  type RaceScenario,
  raceScenarios,
  twoConversionsIn2m,
  twoZapsAtOnce,
  zeroStepStorm,
} from './explore/race-scenarios.js';
export {
  CONCURRENT_FUZZ_BACKENDS,
  type ConcurrentFuzzBackend,
  type ConcurrentFuzzCase,
  type ConcurrentFuzzReport,
  type ConcurrentFuzzStep,
  concurrentFuzzCase,
  isConcurrentFuzzCase,
  runConcurrentFuzzCase,
} from './fuzz/concurrent-fuzz.js';
export {
  type ConcurrentFuzzOptions,
  type ConcurrentFuzzResult,
  FUZZ_CHECK_EVERY,
  FUZZED_PRESETS,
  type FuzzCase,
  type FuzzOptions,
  type FuzzResult,
  fuzzCase,
  runConcurrentFuzzCampaign,
  runFuzzCampaign,
  runFuzzCase,
} from './fuzz/fuzz-campaign.js';
export {
  type MixedFuzzCase,
  type MixedFuzzOptions,
  type MixedFuzzResult,
  mixedFuzzCase,
  runMixedFuzzCampaign,
  runMixedFuzzCase,
  SEQUENTIAL_PER_CONCURRENT,
} from './fuzz/mixed-fuzz-campaign.js';
export {
  checkGuestSafety,
  GUEST_PRESET_NAMES,
  type GuestSafetyCase,
  type GuestSafetyReport,
  type GuestSafetyRule,
  type GuestSafetyViolation,
} from './properties/guest-safety.js';
export {
  DEFAULT_SAFETY_WORKLOAD,
  type SafetyWorkload,
  type WorkloadStep,
} from './properties/safety-workload.js';
export {
  type AdoptedCheckpoint,
  type AdoptedTd,
  type AdoptingVmmFactory,
  adoptingVmmFactory,
  canAdopt,
  hypervVmmFactory,
  kvmVmmFactory,
} from './restore/adopting-vmm-factory.js';
export { exploredHostedTd } from './restore/hosted-td.js';
export { ConversionEvidenceSink, type PendingMapGpa } from './safety/conversion-evidence-sink.js';
export {
  type ConversionEvidence,
  SafetyMonitor,
  type SafetyMonitorOptions,
  type SafetyNote,
  type SafetyRule,
  type SafetyViolation,
} from './safety/safety-monitor.js';
