import type { Gprs, TdxModule } from '@tdxsim/tdx-module';

/** The module each view stands for. */
const viewed = new WeakMap<object, TdxModule>();

/** The view that `object` is or inherits from. */
function viewOf(object: object): object {
  for (let at: object | null = object; at !== null; at = Object.getPrototypeOf(at) as object | null)
    if (viewed.has(at)) return at;
  throw new TypeError('not a view of a TDX module');
}

/** The module `object` (a view, or an object inheriting from one) stands for. */
function moduleOf(object: object): TdxModule {
  return viewed.get(object) ?? (viewed.get(viewOf(object)) as TdxModule);
}

/**
 * The accessors of the views, one pair per key (own field) or per accessor of the module's classes, shared by every
 * view: V8 keeps an accessor in the object's hidden class (map), so accessors made per view gave every scenario's view
 * a map of its own, and the backends' code compiled for the last one was thrown away ("wrong map") in the next.
 */
const fieldAccessors = new Map<PropertyKey, PropertyDescriptor>();
/** Keyed by the class's getter, or its setter when it has none: a class accessor has one pair. */
const protoAccessors = new WeakMap<object, PropertyDescriptor>();

function fieldAccessor(key: PropertyKey): PropertyDescriptor {
  let accessor = fieldAccessors.get(key);
  if (accessor === undefined) {
    accessor = {
      get(this: object) {
        return (moduleOf(this) as unknown as Record<PropertyKey, unknown>)[key];
      },
      // A backend's write lands on its view alone.
      set(this: object, value: unknown) {
        Object.defineProperty(viewOf(this), key, {
          value,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      },
      configurable: true,
    };
    fieldAccessors.set(key, accessor);
  }
  return accessor;
}

function protoAccessor(described: PropertyDescriptor): PropertyDescriptor {
  const { get, set } = described;
  const owner = (get ?? set) as object;
  const cached = protoAccessors.get(owner);
  if (cached !== undefined) return cached;
  const accessor: PropertyDescriptor = {
    ...(get === undefined
      ? {}
      : {
          get(this: object) {
            return get.call(moduleOf(this));
          },
        }),
    ...(set === undefined
      ? {}
      : {
          set(this: object, value: unknown) {
            set.call(moduleOf(this), value);
          },
        }),
    configurable: true,
  };
  protoAccessors.set(owner, accessor);
  return accessor;
}

/**
 * The module as a backend sees it: every member the same, SEAMCALLs through `seamcall`. An object of the module's
 * class (its prototype is the module's prototype), with the module's methods bound to it and its accessors and own
 * fields forwarded (they are the module's state), not a Proxy: a backend reads the module on every exit, and a Proxy's
 * trap cost as much as the rest of the guard. Not an object whose prototype is the module itself: V8 gives an object
 * that becomes a prototype a map of its own. Every view of the same class has the same map (see `fieldAccessors`).
 */
export function moduleView(
  module: TdxModule,
  seamcall: (rax: bigint, regs: readonly bigint[]) => Gprs | Promise<Gprs>,
): TdxModule {
  const view = Object.create(Object.getPrototypeOf(module) as object) as TdxModule;
  viewed.set(view, module);
  // The module's own fields present now (a counter, its package brand; the module adds none later), read from the
  // module itself.
  for (const key of Reflect.ownKeys(module)) Object.defineProperty(view, key, fieldAccessor(key));
  for (
    let proto: object | null = Object.getPrototypeOf(module) as object | null;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto) as object | null
  ) {
    for (const key of Reflect.ownKeys(proto)) {
      if (key === 'constructor' || Object.hasOwn(view, key)) continue;
      const described = Object.getOwnPropertyDescriptor(proto, key) as PropertyDescriptor;
      const { value, get, set } = described;
      if (typeof value === 'function')
        Object.defineProperty(view, key, {
          value: (value as (...args: unknown[]) => unknown).bind(module),
          configurable: true,
          writable: true,
        });
      else if (get !== undefined || set !== undefined)
        Object.defineProperty(view, key, protoAccessor(described));
    }
  }
  Object.defineProperty(view, 'seamcall', { value: seamcall, configurable: true, writable: true });
  return view;
}
