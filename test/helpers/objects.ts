/**
 * Object helpers for tests that build a request body from an object they got
 * back (drop a field, send the rest).
 */

/** A shallow copy of `obj` without `key`: the rest of `const { [key]: dropped, ...rest } = obj`, with no unused binding. */
export function omit<T extends object, K extends keyof T>(obj: T, key: K): Omit<T, K> {
  const copy: Partial<T> = { ...obj };
  delete copy[key];
  return copy as Omit<T, K>;
}
