/**
 * The path of the first place where `actual` and `expected` differ, or undefined when they are equal: own enumerable
 * fields of objects and class instances (same prototype), Map and Set entries, array and typed-array elements.
 * Unlike `toEqual`, a difference in a large model state costs a short message, not a diff of the whole graph (which
 * can take gigabytes of heap).
 */
export function deepDifference(actual: unknown, expected: unknown, path = '$'): string | undefined {
  return compare(actual, expected, path, new WeakMap());
}

function compare(a: unknown, b: unknown, path: string, seen: WeakMap<object, object>): string | undefined {
  if (Object.is(a, b)) return undefined;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return `${path}: ${describe(a)} ≠ ${describe(b)}`;
  }
  if (seen.get(a) === b) return undefined;
  seen.set(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path}: objects of different classes`;
  if (ArrayBuffer.isView(a)) {
    const left = a as unknown as ArrayLike<unknown>;
    const right = b as unknown as ArrayLike<unknown>;
    if (left.length !== right.length) return `${path}.length: ${left.length} ≠ ${right.length}`;
    for (let i = 0; i < left.length; i++) {
      if (!Object.is(left[i], right[i])) return `${path}[${i}]: ${describe(left[i])} ≠ ${describe(right[i])}`;
    }
    return undefined;
  }
  if (a instanceof Map) {
    const other = b as Map<unknown, unknown>;
    if (a.size !== other.size) return `${path}.size: ${a.size} ≠ ${other.size}`;
    for (const [key, value] of a) {
      if (!other.has(key)) return `${path}: key ${describe(key)} missing`;
      const found = compare(value, other.get(key), `${path}.get(${describe(key)})`, seen);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (a instanceof Set) {
    const other = b as Set<unknown>;
    if (a.size !== other.size) return `${path}.size: ${a.size} ≠ ${other.size}`;
    for (const value of a) if (!other.has(value)) return `${path}: ${describe(value)} missing`;
    return undefined;
  }
  const keys = Object.keys(a);
  const otherKeys = Object.keys(b);
  if (keys.length !== otherKeys.length)
    return `${path}: keys [${keys.join(', ')}] ≠ [${otherKeys.join(', ')}]`;
  for (const key of keys) {
    const found = compare(
      (a as Record<string, unknown>)[key],
      (b as Record<string, unknown>)[key],
      Array.isArray(a) ? `${path}[${key}]` : `${path}.${key}`,
      seen,
    );
    if (found !== undefined) return found;
  }
  return undefined;
}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return `function ${value.name}`;
  if (typeof value === 'object' && value !== null) return value.constructor?.name ?? 'object';
  return String(value);
}
