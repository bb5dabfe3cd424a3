/**
 * An empty array whose elements are already of the kind an array of objects (or bigints) has. A fresh `[]` holds small
 * integers, another hidden class (map): code compiled while a long-lived array of objects was in use is thrown away
 * ("wrong map") when the next scenario of a process brings its own fresh array.
 */
export function emptyObjectArray<T>(): T[] {
  const array: unknown[] = [undefined];
  array.length = 0;
  return array as T[];
}
