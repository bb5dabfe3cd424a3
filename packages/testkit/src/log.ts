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

/**
 * The namespaces string `debug` keeps on its factory (replaced by every `enable` and `disable`), read through an
 * object whose prototype is the factory: the factory is a function object V8 keeps in dictionary mode, so a load from
 * it is a hash lookup on every check, where a load through a prototype is a checked field read (as the module's
 * HotLogger reads it). A later `enable` writes the factory's own property, so the value read is always current.
 */
const factory = Object.create(createDebug) as { readonly namespaces?: string };

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
