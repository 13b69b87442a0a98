/**
 * The hook a diagnostic preload (bench/hop-trace.mjs, loaded by bench/ping-hops.ts) installs to stamp where a
 * ping-like program's timing starts and ends; undefined when none is loaded, as always outside that diagnostic.
 */
export type HopTrace = (what: 'send' | 'reply', seq: number) => void;

export function hopTrace(): HopTrace | undefined {
  return (globalThis as Record<symbol, HopTrace | undefined>)[Symbol.for('podlab.hopTrace')];
}
