/** Runs a stepped computation (a generator that yields between steps) to its end at once, and returns its result. */
export function runSteps<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}
