import type { VmmStep } from './test-vmm.js';

/**
 * A gate for the test VMM's hook: the first step that matches (once armed) parks the VMM until the test opens the
 * gate; `parked` resolves when that happens. `forever` keeps it parked for good.
 */
export function vmmGate(
  match: (step: VmmStep) => boolean,
  options: { armed?: boolean; forever?: boolean } = {},
) {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  let reached: () => void = () => undefined;
  const parked = new Promise<void>((resolve) => {
    reached = resolve;
  });
  let armed = options.armed ?? true;
  return {
    /** Resolves once the VMM is parked at the gate. */
    parked,
    /** Lets the parked VMM go on. */
    open,
    /** Starts matching (for a gate made with `armed: false`). */
    arm: () => {
      armed = true;
    },
    hook: (step: VmmStep): Promise<void> | undefined => {
      if (!armed || !match(step)) return undefined;
      armed = false;
      reached();
      return options.forever === true ? new Promise<void>(() => undefined) : opened;
    },
  };
}
