import { TestkitError } from '../errors.js';

/** Returns the object it is given: lets {@link ModuleView} add a private field to an object made elsewhere. */
class ObjectGiven {
  constructor(object: object) {
    // biome-ignore lint/correctness/noConstructorReturn: the object given is the one to mark.
    return object;
  }
}

/**
 * Prototype links {@link ModuleView.moduleBehind} follows before it gives up: a view is found at depth 0 (read on
 * the view) or 1 (on an object made with the view as prototype); the bound stops a Proxy whose `getPrototypeOf`
 * never reaches `null` (one returning itself) from looping for ever.
 */
const MAX_PROTOTYPE_DEPTH = 32;

/**
 * Marks a module view (the module as a backend sees it under the backend guard) with its module, in a private field
 * (not seen by `Reflect.ownKeys`, and no table keyed by views: a view is made per scenario, per fuzz case). The
 * view's accessors are the same functions for every view and find their module here: V8 keeps an accessor's
 * functions in the object's map, so accessors made per view (closures over its module) gave the second view another
 * accessor on the same transition, and V8 turned it into a slow (dictionary) object: the backends' exit code,
 * compiled on the first scenario's fast view, was thrown away ("wrong map") in the second scenario of a process.
 */
class ModuleView extends ObjectGiven {
  readonly #module: object;

  private constructor(view: object, module: object) {
    super(view);
    this.#module = module;
  }

  /** Gives `view` its module. */
  static mark(view: object, module: object): void {
    new ModuleView(view, module);
  }

  /**
   * The module behind `receiver`: the view's own, or that of the view `receiver` inherits from. Any other receiver
   * (a Proxy of a view, whose private fields are its target's, an unrelated object, a primitive) gets a
   * {@link TestkitError}: a shared accessor cannot tell which view it was read from, and guessing could let one
   * view read another TD's module.
   */
  static moduleBehind(receiver: unknown): Record<PropertyKey, unknown> {
    let o: unknown = receiver;
    for (
      let depth = 0;
      depth <= MAX_PROTOTYPE_DEPTH && (typeof o === 'object' || typeof o === 'function');
      depth++
    ) {
      if (o === null) break;
      if (#module in o) return (o as ModuleView).#module as Record<PropertyKey, unknown>;
      o = Object.getPrototypeOf(o);
    }
    throw new TestkitError(
      'INVALID_BACKEND',
      'a member of the module was read or written through a receiver that is not the module view the backend ' +
        'guard gave (nor an object made with it as prototype); read members on the module the guard gave, not ' +
        'through a Proxy of it, Reflect.get with another receiver or an accessor called on another object',
      'this',
    );
  }
}

const moduleBehind = ModuleView.moduleBehind;

/** One accessor pair per own-field name of the module, shared by every view (see {@link ModuleView}). */
const FIELD_FORWARDERS = new Map<PropertyKey, { get(): unknown; set(value: unknown): void }>();

/**
 * The view's accessor for the module's own field `key`: read from the module; a write defines the value on the
 * receiver (the view, or an object inheriting from it), as an inherited writable data field would, never on the
 * module.
 */
function fieldForwarder(key: PropertyKey): { get(): unknown; set(value: unknown): void } {
  let pair = FIELD_FORWARDERS.get(key);
  if (pair === undefined) {
    pair = {
      get(this: unknown): unknown {
        return moduleBehind(this)[key];
      },
      set(this: unknown, value: unknown): void {
        moduleBehind(this);
        Object.defineProperty(this, key, { value, writable: true, enumerable: true, configurable: true });
      },
    };
    FIELD_FORWARDERS.set(key, pair);
  }
  return pair;
}

/** Shared forwarders of the module's prototype getters and setters, one per original (see {@link ModuleView}). */
const ACCESSOR_FORWARDERS = new Map<Accessor, Accessor>();

/** A getter or a setter of the module's class. */
type Accessor = (value?: unknown) => unknown;

/**
 * `accessor` (a getter or a setter) called on the module behind its receiver. One fixed parameter, no rest array:
 * a getter is read on every exit, and a getter ignores the `undefined` it is passed.
 */
function forwardedAccessor(accessor: Accessor): Accessor {
  let forwarder = ACCESSOR_FORWARDERS.get(accessor);
  if (forwarder === undefined) {
    forwarder = function (this: unknown, value?: unknown): unknown {
      return accessor.call(moduleBehind(this), value);
    };
    ACCESSOR_FORWARDERS.set(accessor, forwarder);
  }
  return forwarder;
}

/**
 * A view of `module`: an object of its class (its prototype is the module's prototype) whose own fields and
 * accessors are forwarded to the module and whose methods are bound to it, not a Proxy (a backend reads the module
 * on every exit, and a Proxy's trap cost as much as the rest of the guard), nor an object whose prototype is the
 * module (V8 gives a prototype a map of its own: a new map per scenario). The caller adds what it watches
 * (`seamcall`).
 * @internal
 */
export function moduleView<M extends object>(module: M): M {
  const view = Object.create(Object.getPrototypeOf(module) as object) as M;
  ModuleView.mark(view, module);
  // The module's own fields present now (a counter, its package brand; the module adds none later).
  for (const key of Reflect.ownKeys(module))
    Object.defineProperty(view, key, { ...fieldForwarder(key), configurable: true });
  for (
    let proto: object | null = Object.getPrototypeOf(module) as object | null;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  ) {
    for (const key of Reflect.ownKeys(proto)) {
      if (key === 'constructor' || Object.hasOwn(view, key)) continue;
      const { value, get, set } = Object.getOwnPropertyDescriptor(proto, key) as PropertyDescriptor;
      if (typeof value === 'function')
        Object.defineProperty(view, key, {
          value: (value as (...args: unknown[]) => unknown).bind(module),
          configurable: true,
          writable: true,
        });
      else if (get !== undefined || set !== undefined)
        Object.defineProperty(view, key, {
          ...(get === undefined ? {} : { get: forwardedAccessor(get as Accessor) }),
          ...(set === undefined ? {} : { set: forwardedAccessor(set as Accessor) }),
          configurable: true,
        });
    }
  }
  return view;
}
