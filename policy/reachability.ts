/**
 * Reachability matrices in the style of cyclonus' truth tables and the
 * Kubernetes netpol e2e suite: rows are sources, columns destinations, `.`
 * where a connection would pass and `X` where policy stops it.
 *
 * A pod reaching itself by its own address never leaves its namespace (the
 * kernel loops it back before the veth), so the diagonal is always allowed,
 * as the e2e suite's `AllowLoopback()` says.
 */
import type { PolicySet, Flow } from './engine.ts';
import type { PolicyPod, PolicyProtocol } from './types.ts';

export type Matrix = boolean[][];

/** The matrix of `pods × pods` for one protocol and port, as the engine judges it (both ends on their nodes). */
export function reachability(set: PolicySet, pods: readonly PolicyPod[], protocol: PolicyProtocol, port: number): Matrix {
  return pods.map((s) => pods.map((d) => s === d || set.evaluate({ src: s.ip, dst: d.ip, protocol, dport: port } satisfies Flow).allowed));
}

/** `podName(p)`: `ns/name`. */
export const podName = (p: Pick<PolicyPod, 'namespace' | 'name'>): string => `${p.namespace}/${p.name}`;

/** A matrix as cyclonus prints it (header of destinations, one row per source). */
export function formatMatrix(names: readonly string[], m: Matrix): string {
  const w = Math.max(...names.map((n) => n.length));
  const head = ' '.repeat(w) + ' ' + names.map((n) => n.padEnd(w)).join(' ');
  const rows = names.map((n, i) => n.padEnd(w) + ' ' + m[i].map((ok) => (ok ? '.' : 'X').padEnd(w)).join(' '));
  return [head, ...rows].map((l) => l.trimEnd()).join('\n') + '\n';
}

/** Parses rows such as `..X......` (one per source, as many characters as destinations). */
export function parseMatrix(rows: readonly string[]): Matrix {
  return rows.map((r) => [...r.replace(/\s+/g, '')].map((c) => c === '.'));
}

/** The cells where two matrices disagree: `src -> dst: expected ., got X`. */
export function diffMatrix(names: readonly string[], want: Matrix, got: Matrix): string[] {
  const out: string[] = [];
  for (let i = 0; i < names.length; i++) {
    for (let j = 0; j < names.length; j++) {
      if (want[i]?.[j] !== got[i]?.[j]) out.push(`${names[i]} -> ${names[j]}: expected ${want[i]?.[j] ? '.' : 'X'}, got ${got[i]?.[j] ? '.' : 'X'}`);
    }
  }
  return out;
}
