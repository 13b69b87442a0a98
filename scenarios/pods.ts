/**
 * The runner's view of the pods: name, node, IP and labels, refreshed from the
 * apiserver after anything that changes them, and kept as last seen while the
 * apiserver is down (the data plane, and so the scenario, goes on without it).
 * Pod references of a scenario resolve here; `pick: random` draws from the
 * step's seeded stream over a list sorted by name, so a seed picks the same pods.
 */
import type { ApiClient } from '../control-plane/client.ts';
import type { Pod } from '../control-plane/types.ts';
import type { SeededRng } from '../common/rng.ts';
import type { PodRef, PodSelector } from './model.ts';

export interface PodInfo {
  key: string;
  name: string;
  namespace: string;
  node: string;
  ip: string;
  labels: Record<string, string>;
  /** The pod object as last read, for `delete-pods --recreate`. */
  obj: Pod;
}

/** A failure while running a step (not a failed assertion): the run stops with verdict "error". */
export class StepError extends Error {
  override name = 'StepError';
}

const byName = (a: PodInfo, b: PodInfo) => a.key.localeCompare(b.key, undefined, { numeric: true });

export class PodTable {
  readonly pods = new Map<string, PodInfo>();
  /** When the last refresh failed (apiserver down), why. */
  stale?: string;

  constructor(private readonly api: ApiClient) {}

  /** Re-reads every pod; on a connection error keeps the last view. */
  async refresh(): Promise<void> {
    let items: Pod[];
    try {
      items = (await this.api.list<Pod>('pods')).items;
    } catch (e) {
      this.stale = (e as Error).message;
      return;
    }
    this.stale = undefined;
    this.pods.clear();
    for (const p of items) {
      const ns = p.metadata.namespace ?? 'default';
      this.pods.set(`${ns}/${p.metadata.name}`, {
        key: `${ns}/${p.metadata.name}`,
        name: p.metadata.name,
        namespace: ns,
        node: p.spec?.nodeName ?? '',
        ip: p.status?.phase === 'Running' ? (p.status?.podIP ?? '') : '',
        labels: p.metadata.labels ?? {},
        obj: p,
      });
    }
  }

  get(key: string): PodInfo | undefined {
    return this.pods.get(key);
  }

  matching(s: PodSelector): PodInfo[] {
    return [...this.pods.values()]
      .filter((p) => {
        if (s.name !== undefined && p.name !== s.name && p.key !== s.name) return false;
        if (s.namespace !== undefined && p.namespace !== s.namespace) return false;
        if (s.node !== undefined && p.node !== s.node) return false;
        if (s.prefix !== undefined && !p.name.startsWith(s.prefix)) return false;
        if (s.labels && !Object.entries(s.labels).every(([k, v]) => p.labels[k] === v)) return false;
        return true;
      })
      .sort(byName);
  }

  /** The pods a reference means now; an empty result is a StepError naming the reference. */
  resolve(ref: PodRef, rng: SeededRng, count?: number): PodInfo[] {
    if (ref.type === 'ip' || ref.type === 'service') throw new StepError(`${ref.text} is not a pod`);
    let found: PodInfo[];
    let pick: 'first' | 'random' | 'all' = 'all';
    if (ref.type === 'name') {
      const p = this.pods.get(ref.key);
      found = p ? [p] : [];
    } else {
      found = this.matching(ref.selector);
      pick = ref.pick;
    }
    if (!found.length) throw new StepError(`no pod matches ${ref.text}${this.stale ? ` (pod list as of the last apiserver answer: ${this.stale})` : ''}`);
    if (pick === 'first') return found.slice(0, 1);
    if (pick === 'random') return [found[rng.int(0, found.length - 1)]];
    if (count !== undefined && count < found.length) return shuffle(found, rng).slice(0, count).sort(byName);
    return found;
  }
}

/** Fisher-Yates with the seeded stream. */
export function shuffle<T>(xs: T[], rng: SeededRng): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
