/**
 * kube-proxy's engine for one mode, its module loaded when first asked for: an agent's thread holds only the
 * mode it runs (iptables by default), not the other two, ~40 KB of its bundle between them and the heap their
 * code takes once loaded. Tests and benches that want every engine at once import them from index.ts.
 */
import type { EngineOptions, ProxyMode, ServiceProxyEngine } from './types.ts';

/** Builds engines of the mode it was loaded for. */
export interface EngineFactory {
  readonly mode: ProxyMode;
  create(opts: EngineOptions): ServiceProxyEngine;
}

export async function loadEngineFactory(mode: ProxyMode): Promise<EngineFactory> {
  switch (mode) {
    case 'iptables': {
      const { IptablesProxier } = await import('./iptables-mode.ts');
      return { mode, create: (opts) => new IptablesProxier(opts) };
    }
    case 'ipvs': {
      const { IpvsProxier } = await import('./ipvs-mode.ts');
      return { mode, create: (opts) => new IpvsProxier(opts) };
    }
    case 'userspace': {
      const { UserspaceProxier } = await import('./userspace-mode.ts');
      return { mode, create: (opts) => new UserspaceProxier(opts) };
    }
  }
}
