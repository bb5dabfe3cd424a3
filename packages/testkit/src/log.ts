import createDebug from 'debug';

/** A `debug` logger in the testkit's namespace: `DEBUG=tdxsim:testkit:*` shows them all. */
export function testkitLogger(name: string): createDebug.Debugger {
  return createDebug(`tdxsim:testkit:${name}`);
}

/**
 * Nothing read yet: the first check asks the logger, as `debug`'s own accessor decides only when first read (state
 * changed between the import and the first check counts).
 */
const NOT_READ = Symbol('not read');

/** The namespaces string `debug` keeps on its factory (replaced by every `enable` and `disable`). */
const factory = createDebug as unknown as { readonly namespaces?: string };

/**
 * Whether a `debug` logger is enabled, for a check made on every SEAMCALL: the logger's own `enabled` (an accessor on
 * a function object, slow to reach from a hot path) is read again only when `debug.enable` or `debug.disable` changed
 * the namespaces since the last check, as the module's HotLogger does.
 */
export class EnabledCheck {
  readonly #debug: createDebug.Debugger;
  /** The namespaces when `enabled` was last read from the logger; {@link NOT_READ} before the first check. */
  #namespaces: string | undefined | typeof NOT_READ = NOT_READ;
  #enabled = false;

  constructor(debug: createDebug.Debugger) {
    this.#debug = debug;
  }

  /** True while DEBUG (or `debug.enable`) selects the logger's namespace. */
  get enabled(): boolean {
    const namespaces = factory.namespaces;
    if (namespaces !== this.#namespaces) {
      this.#namespaces = namespaces;
      this.#enabled = this.#debug.enabled;
    }
    return this.#enabled;
  }
}
