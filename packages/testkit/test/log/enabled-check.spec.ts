import createDebug from 'debug';
import { afterEach, describe, expect, it } from 'vitest';
import { EnabledCheck } from '../../src/log.js';

/**
 * EnabledCheck caches a logger's `enabled` and reads it again only when `debug`'s namespaces change: every `enable`
 * and `disable` made after the check was created must be seen at the next check.
 */
describe('EnabledCheck', () => {
  const before = createDebug.disable();
  afterEach(() => {
    createDebug.enable(before);
  });

  it('follows debug.enable and debug.disable made after it was created', () => {
    const logger = createDebug('tdxsim:testkit-spec:enabled-check');
    const check = new EnabledCheck(logger);
    createDebug.disable();
    expect(check.enabled).toBe(false);
    createDebug.enable('tdxsim:testkit-spec:*');
    expect(check.enabled).toBe(true);
    expect(check.enabled).toBe(true);
    createDebug.enable('tdxsim:other');
    expect(check.enabled).toBe(false);
    createDebug.enable('tdxsim:testkit-spec:enabled-check');
    expect(check.enabled).toBe(true);
    createDebug.disable();
    expect(check.enabled).toBe(false);
  });

  it('reads the state at its first check, not at its creation', () => {
    createDebug.disable();
    const check = new EnabledCheck(createDebug('tdxsim:testkit-spec:first-check'));
    createDebug.enable('tdxsim:testkit-spec:first-check');
    expect(check.enabled).toBe(true);
  });
});
