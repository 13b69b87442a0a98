/**
 * A LoadBalancer address held by the kernel of the node's own network
 * namespace (netns labs, MetalLB's layer-2 mode): the elected node adds it as
 * a /32 to its eth0, so its kernel answers ARP for it on the lab bridge and
 * the agent's real sockets can bind it, and announces the move with one
 * gratuitous ARP (iputils `arping -U`, a real frame from eth0's MAC).
 *
 * The address carries a kernel lifetime (`valid_lft`) that the holder renews
 * every election round: a holder that dies stops renewing and its kernel drops
 * the address by itself, before another node can be elected (the lifetime is
 * shorter than the lease), so two namespaces never answer ARP for it at once.
 *
 * Only ever inside a podlab-* namespace: the caller's namespace is checked,
 * and nothing here touches the root namespace.
 */
import { systemTool } from '../common/system-tool.ts';
import { NetnsError, ownNetnsName, run } from './netns.ts';

/** True when this process runs in a lab's namespace (where an agent may add addresses to its own eth0). */
export function inLabNamespace(): boolean {
  return ownNetnsName().startsWith('podlab-');
}

export interface HeldLbAddress {
  /**
   * Sends the gratuitous ARP; resolves with 'sent' or why not (the kernel
   * still answers ARP requests). Called once the sockets are bound, so the
   * first client that follows it finds them (arping itself lingers a second).
   */
  announce(): Promise<string>;
  /** Extends the kernel lifetime again (each election round while leading). */
  renew(): Promise<void>;
  /** Removes the address (lost election, Service gone, shutdown). */
  release(): Promise<void>;
}

export interface HoldOptions {
  dev: string;
  /** valid_lft in seconds: shorter than the election lease (see the module comment). */
  lifetimeS: number;
}

/** Sends one gratuitous ARP (an unsolicited request: sender = target = ip) from `dev`; resolves with what happened. */
export async function gratuitousArp(ip: string, dev: string): Promise<string> {
  const arping = systemTool('arping');
  if (!arping) return 'no arping (apt-get install iputils-arping)';
  try {
    // -U: unsolicited ARP, which updates the neighbours' caches; -w 0: do not wait for replies.
    await run(arping, ['-U', '-c', '1', '-w', '0', '-I', dev, ip], { timeoutMs: 5000 });
    return 'sent';
  } catch (e) {
    return (e as Error).message;
  }
}

/** Adds `ip`/32 to `dev` in this process's own lab namespace; see the module comment. */
export async function holdLbAddress(ip: string, o: HoldOptions): Promise<HeldLbAddress> {
  const ns = ownNetnsName();
  if (!ns.startsWith('podlab-')) throw new NetnsError(`refusing to add ${ip} to ${o.dev}: this process is not in a podlab network namespace (it is in '${ns || 'an unnamed one'}')`);
  const lft = ['valid_lft', String(o.lifetimeS), 'preferred_lft', String(o.lifetimeS)];
  // replace: a previous life of this agent may have left it (until its lifetime ran out).
  await run('ip', ['addr', 'replace', `${ip}/32`, 'dev', o.dev, ...lft]);
  let released = false;
  return {
    announce: () => gratuitousArp(ip, o.dev),
    renew: async () => {
      // replace, not change: re-adds it should a stalled process have let it lapse.
      if (!released) await run('ip', ['addr', 'replace', `${ip}/32`, 'dev', o.dev, ...lft]);
    },
    release: async () => {
      released = true;
      await run('ip', ['addr', 'del', `${ip}/32`, 'dev', o.dev]).catch(() => {
        /* already gone: its lifetime ran out */
      });
    },
  };
}
