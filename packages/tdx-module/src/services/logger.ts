import createDebug from 'debug';

/** A `debug` logger under `tdxsim:module:<component>`. Enable with DEBUG=tdxsim:module:*. */
export function moduleLogger(component: string): createDebug.Debugger {
  return createDebug(`tdxsim:module:${component}`);
}
