import createDebug from 'debug';

/** A `debug` logger under `tdxsim:module:<component>`. Enable with DEBUG=tdxsim:module:*. */
export function moduleLogger(component: string): createDebug.Debugger {
  return createDebug(`tdxsim:module:${component}`);
}

/**
 * The namespaces string `debug` keeps on its factory (replaced by every `enable` and `disable`), read through an
 * object whose prototype is the factory. The factory is a function with some twenty properties, which V8 keeps in
 * dictionary mode: a load of `namespaces` from it is a hash lookup in a runtime IC call on every SEAMCALL and TDCALL.
 * Loaded through a prototype chain, V8 makes the prototype fast and the load a checked field read; a later
 * `enable` writes the same property, so the value read is always the factory's own.
 */
const factory = Object.create(createDebug) as { readonly namespaces?: string };

/**
 * A {@link moduleLogger} for paths taken millions of times (every SEAMCALL, every TDCALL): its `enabled` is a class
 * getter that compares one string with the one it saw last, where a `debug` logger's own `enabled` is an accessor on
 * a function object (slow to reach from a hot path). `debug.enable` at run time is honoured at the next check.
 */
export class HotLogger {
  readonly #debug: createDebug.Debugger;
  #namespaces: string | undefined;
  #enabled: boolean;

  constructor(component: string) {
    this.#debug = moduleLogger(component);
    this.#namespaces = factory.namespaces;
    this.#enabled = this.#debug.enabled;
  }

  /** True while DEBUG (or `debug.enable`) selects this logger's namespace. */
  get enabled(): boolean {
    const namespaces = factory.namespaces;
    if (namespaces !== this.#namespaces) {
      this.#namespaces = namespaces;
      this.#enabled = this.#debug.enabled;
    }
    return this.#enabled;
  }

  /** Writes one line, formatted as `debug` formats it (printf-style). */
  log(formatter: string, ...args: unknown[]): void {
    this.#debug(formatter, ...args);
  }
}
