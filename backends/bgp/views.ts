/**
 * `podlab node NODE bgp summary | bgp routes`: the BGP views, like `birdc show
 * protocols` / `show route` (and `calicoctl node status`), for whichever
 * speaker a node runs.
 */
import type { BgpRouting } from './bgp-backend.ts';

export type ViewResult<T> = { out: T } | { error: string };

/** The view `argv` asks for; undefined when `argv` is not a BGP view. */
export function bgpView(argv: string[], routing: BgpRouting | undefined, who: { node: string; backend: string; usage?: string }): ViewResult<Promise<string> | string> | undefined {
  const [tool, obj] = argv;
  if (tool !== 'bgp') return undefined;
  if (!routing) return { error: `${who.node} runs the ${who.backend} backend: no BGP speaker (start the lab with a BGP backend: --backend bgp)` };
  if (obj === 'summary' || obj === 'protocols' || obj === undefined) return { out: routing.summary() };
  if (obj === 'routes' || obj === 'route') return { out: routing.routes() };
  return { error: `usage: bgp summary | bgp routes${who.usage ?? ''}` };
}
