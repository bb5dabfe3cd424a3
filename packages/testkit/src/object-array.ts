/**
 * An empty array whose elements kind is already "any object" (V8's PACKED_ELEMENTS). A literal `[]` starts as an array
 * of small integers and changes its hidden class at its first object; code optimised while such arrays were only ever
 * empty (a violation list in a case without violations) is then thrown away and compiled again when a rare case
 * pushes the first one. Starting every hot list in its final kind keeps one hidden class for all of them.
 */
export function objectArray<T>(): T[] {
  const array: unknown[] = [OBJECT_KIND];
  // pop, not `length = 0`: the same hidden class, and the length setter is a slow builtin call (a few per case).
  array.pop();
  return array as T[];
}

const OBJECT_KIND = Object.freeze({});
