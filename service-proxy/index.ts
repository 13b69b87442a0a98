/**
 * kube-proxy's three modes as pure decision engines. The node agent builds
 * one per node with {@link createServiceProxyEngine}, feeds it the Service and
 * EndpointSlice informers' contents with `update()`, and asks `decide()` about
 * the first packet of each new connection (see types.ts for the contract).
 *
 * What the node's kube-proxy needs is on `ServiceProxyEngine` (types.ts):
 * `iptablesSave()`, the userspace listeners (`proxyPorts()`, `pickBackend()`,
 * empty/null in the kernel modes) and `views` (ipvsadm, ipset: present only in
 * ipvs mode). The classes add more for tests and benches:
 * - iptables: `iptablesRestore()`, `recentLists()`;
 * - ipvs: `ipvsadmList()`, `ipsetList()`, `dummyAddresses()` (kube-ipvs0), `setWeight()`.
 */
import { IptablesProxier } from './iptables-mode.ts';
import { IpvsProxier } from './ipvs-mode.ts';
import { UserspaceProxier } from './userspace-mode.ts';
import type { EngineOptions, ProxyMode } from './types.ts';

export { IptablesProxier, serviceChains, endpointChain, probability, LARGE_CLUSTER_ENDPOINTS_THRESHOLD } from './iptables-mode.ts';
export { IpvsProxier, type VirtualServer, type IpSet } from './ipvs-mode.ts';
export { UserspaceProxier, type BackendChoice, type ProxyPort } from './userspace-mode.ts';
export { buildModel, categorizeEndpoints, portProtoHash, endpointHash, servicePortName, type ServicePortInfo, type EndpointInfo } from './model.ts';
export * from './types.ts';

/** Any of the three engines. */
export type AnyProxier = IptablesProxier | IpvsProxier | UserspaceProxier;

/** Builds the engine for `--proxy-mode`. */
export function createServiceProxyEngine(mode: 'iptables', opts: EngineOptions): IptablesProxier;
export function createServiceProxyEngine(mode: 'ipvs', opts: EngineOptions): IpvsProxier;
export function createServiceProxyEngine(mode: 'userspace', opts: EngineOptions): UserspaceProxier;
export function createServiceProxyEngine(mode: ProxyMode, opts: EngineOptions): AnyProxier;
export function createServiceProxyEngine(mode: ProxyMode, opts: EngineOptions): AnyProxier {
  switch (mode) {
    case 'iptables':
      return new IptablesProxier(opts);
    case 'ipvs':
      return new IpvsProxier(opts);
    case 'userspace':
      return new UserspaceProxier(opts);
  }
}
