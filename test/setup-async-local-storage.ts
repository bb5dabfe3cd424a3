/**
 * Vitest setup file (vitest.config.ts): an AsyncLocalStorage that a test file turned on (a deciding scheduler's actor
 * tracking, playwright's call tracking) and left on is turned off when the file ends. On Node 20 an enabled
 * AsyncLocalStorage installs promise hooks that make every promise of the thread dearer, and test files share their
 * worker thread (isolate: false): one left on (html-report.spec.ts's browser, before accept-status.spec.ts disposed its
 * schedulers) slowed every file after it in that worker (issue 14). Only storages turned on during the file are turned
 * off, and the file is named on stderr; where Node has no `_enable` to follow (other versions), nothing is done.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { relative } from 'node:path';
import { afterAll, expect } from 'vitest';

type Tracked = { _enable?: () => void; disable: () => void };
const prototype = AsyncLocalStorage.prototype as unknown as Tracked;
const ENABLED = Symbol.for('tdxsim.test.enabledAsyncLocalStorages');
const registry = globalThis as { [ENABLED]?: Set<Tracked> };

// Once per worker thread (the setup file runs again for every test file).
if (registry[ENABLED] === undefined && typeof prototype._enable === 'function') {
  const enabled = new Set<Tracked>();
  registry[ENABLED] = enabled;
  const enable = prototype._enable;
  const disable = prototype.disable;
  prototype._enable = function (this: Tracked) {
    enabled.add(this);
    enable.call(this);
  };
  prototype.disable = function (this: Tracked) {
    enabled.delete(this);
    disable.call(this);
  };
}

const leftOn = registry[ENABLED];
if (leftOn !== undefined) {
  const before = new Set(leftOn);
  afterAll(() => {
    const left = [...leftOn].filter((storage) => !before.has(storage));
    for (const storage of left) storage.disable();
    // Said once per file: a storage the simulator owns (a scheduler not disposed) left on by a test stays visible.
    if (left.length > 0)
      console.warn(
        `${relative(process.cwd(), expect.getState().testPath ?? 'a test file')} left ${left.length} AsyncLocalStorage on: turned off when the file ended`,
      );
  });
}
