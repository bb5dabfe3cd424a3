/**
 * Test support for the backends' synchronous SEAMCALL paths (host-kvm and host-hyperv `sync-seamcall.spec.ts`): a
 * module whose every SEAMCALL answers in a promise, and a scheduler that records the steps it decided.
 */
import { type Gprs, RandomScheduler, type TdxModule } from '../../src/index.js';

/** A thenable whose `then` gives a thenable again, as a promise of another realm gives a promise of that realm. */
function thenable(promise: Promise<unknown>): Promise<Gprs> {
  return {
    // biome-ignore lint/suspicious/noThenProperty: the point is an answer that is only a thenable
    then: (ok: (g: unknown) => unknown, fail: (e: unknown) => unknown) => thenable(promise.then(ok, fail)),
  } as unknown as Promise<Gprs>;
}

/**
 * Makes every SEAMCALL of `module` answer in a promise, as a port that always awaits would (and as it did before
 * SEAMCALLs could answer at once); with `thenables`, in a thenable that is a promise to `await` but not
 * `instanceof Promise` (a promise of another realm, say).
 */
export function answerInPromises(module: TdxModule, thenables = false): void {
  const seamcall = module.seamcall.bind(module);
  const answer = (rax: bigint, regs: readonly bigint[]): Promise<Gprs> => {
    const answered = Promise.resolve(seamcall(rax, regs));
    return thenables ? thenable(answered) : answered;
  };
  Object.defineProperty(module, 'seamcall', { value: answer, configurable: true, writable: true });
}

/** A `RandomScheduler` of `seed` and the steps it decides, each as `actor flow/step gpa choice/waiting`. */
export function recordingScheduler(seed: number): { scheduler: RandomScheduler; steps: string[] } {
  const steps: string[] = [];
  const scheduler = new RandomScheduler({
    seed,
    onStep: (s) =>
      steps.push(`${s.actor} ${s.point.flow}/${s.point.step} ${s.point.gpa ?? '-'} ${s.choice}/${s.waiting}`),
  });
  return { scheduler, steps };
}
