import createDebug from 'debug';

/** A `debug` logger in the testkit's namespace: `DEBUG=tdxsim:testkit:*` shows them all. */
export function testkitLogger(name: string): createDebug.Debugger {
  return createDebug(`tdxsim:testkit:${name}`);
}
