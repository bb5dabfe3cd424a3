/** Stable ids of the conformance rules. */
export type ConformanceRuleId =
  | 'ghci-status'
  | 'retry-r11-in-range'
  | 'retry-r11-aligned'
  | 'retry-r11-direction'
  | 'retry-progress'
  | 'conversion-backed'
  | 'conversion-within-request'
  | 'seamcall-no-state-errors'
  | 'guest-conversions-complete'
  | 'module-invariants'
  | 'backend-view-matches';

/** The rules a conforming VMM backend keeps, in the order they are reported. */
export const CONFORMANCE_RULES: readonly { readonly id: ConformanceRuleId; readonly title: string }[] = [
  { id: 'ghci-status', title: 'MapGPA statuses are within the GHCI set' },
  { id: 'retry-r11-in-range', title: 'on RETRY, R12 ≤ R11 < R12 + R13 (shared bit aside)' },
  { id: 'retry-r11-aligned', title: 'on RETRY, R11 is 4 KiB-aligned' },
  { id: 'retry-r11-direction', title: 'on RETRY, R11 keeps the shared bit of R12' },
  { id: 'retry-progress', title: 'RETRYs without progress are bounded' },
  { id: 'conversion-backed', title: 'what a reply acknowledges has left its old side' },
  { id: 'conversion-within-request', title: 'a MapGPA call changes no page outside its request' },
  { id: 'seamcall-no-state-errors', title: 'no SEAMCALL hits an error a correct VMM avoids (BUSY allowed)' },
  { id: 'guest-conversions-complete', title: 'the strict and linux guests complete every workload' },
  { id: 'module-invariants', title: "the module's invariants hold, shared-EPT rules included" },
  {
    id: 'backend-view-matches',
    title: "the backend's own view of what it mapped matches the module (if it has one)",
  },
];

/** One rule's verdict: `message` names the rule and, when it failed, the evidence. */
export interface ConformanceCheck {
  readonly rule: ConformanceRuleId;
  readonly title: string;
  readonly passed: boolean;
  readonly message: string;
}
