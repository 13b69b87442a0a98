/**
 * `podlab up --mode netns` (root): the lab's processes in Linux network
 * namespaces on a real bridge, so the VXLAN datagrams cross real interfaces
 * (`ip netns exec podlab-underlay tshark -i podlab0`) and the Linux kernel can
 * join as a node (`--kernel-nodes K`, kernel-node/).
 *
 *     podlab-underlay    bridge podlab0, 10.250.0.10/24; the apiserver listens there,
 *                        and on <stateDir>/api.sock for the CLI in the root namespace
 *     podlab-node-N      eth0 10.250.0.(10+N)/24, a veth into podlab0; the node agent
 *                        runs inside (`ip netns exec podlab-node-N node bin/podlab.js agent ...`)
 *     podlab-knode-K     eth0 on the next address; kernel vxlan flannel.1, cni0, pods as
 *                        namespaces podlab-knode-K-<pod>; its agent (`podlab kernel-node`)
 *                        runs in the root namespace and programs it with `ip -n`
 *
 * The underlay subnet (`--underlay-net`, default 10.250.0.0/24) exists only
 * inside these namespaces: nothing is added to the root namespace, no
 * interface enters or leaves it, and the namespaces have no route out. Every
 * namespace is recorded in lab.json before it is created; `podlab down` (also
 * `--force`, also after a crash, also when `up` fails half-way) stops the
 * processes by pid and deletes the namespaces, which takes the veths along.
 *
 * host-gw and bgp in netns mode put pod packets on the real eth0 as raw
 * frames (`--wire raw`, the default here; libpcap through the optional `cap`
 * addon, overlay/underlay-raw.ts), so the bridge carries what a Calico or
 * host-gw underlay carries and kernel nodes take part: a host-gw kernel node
 * gets flanneld's `via <node IP>` routes, a bgp kernel node runs a real BIRD
 * (backends/bgp/bird.ts) peering with podlab's speakers. `--wire udp` keeps
 * podlab's bare-IPv4 UDP wire (port 8473), which the kernel does not speak.
 */
import path from 'node:path';
import { createHash } from 'node:crypto';
import { deriveMac } from '../common/rng.ts';
import type { Pod } from '../control-plane/types.ts';
import { LAB_BRIDGE, addNetns, addVethPair, hasIproute2, hasTool, ifname, ipIn, isRoot, listNetns, netnsNames, sysctlIn, validatePrefix, wireLikeOffloads } from '../hostnet/netns.ts';
import { installClusterDns } from './cluster-dns.ts';
import { LabError, ROOT, agentFeatureArgs, applyObjects, claimStateDir, defaultLoadBalancerObjects, controllerArgs, demoPods, down, labAddresses, labApi, nodeTokenPath, prepareLabPki, nodeObject, spawnLogged, validateUpOptions, waitForEvent, waitPodsRunning, waitRoutesConverged, writeKubeconfig, type UpOptions } from './launch.ts';
import { capAvailable } from '../overlay/underlay-raw.ts';
import { DEFAULT_BACKEND, backendNamed, findBackend } from '../backends/registry.ts';
import { writeLab, type LabRecord, type NodeRecord, type ProcRecord } from './state.ts';
import { Cidr } from '../packet/cidr.ts';
import { parseIpv4CidrInput } from '../packet/ip-input.ts';

/** The default underlay subnet of netns labs (inside the lab's namespaces only). */
export const DEFAULT_UNDERLAY_NET = '10.250.0.0/24';

/** Private ranges an underlay may use (RFC 1918, and RFC 6598 shared space). */
const PRIVATE_RANGES: Cidr[] = [Cidr.of('10.0.0.0', 8), Cidr.of('172.16.0.0', 12), Cidr.of('192.168.0.0', 16), Cidr.of('100.64.0.0', 10)];

/** Checks the netns-only options; returns the first problem, naming the flag. */
export function validateNetnsOptions(o: UpOptions): string | undefined {
  const under = parseIpv4CidrInput(o.underlayNet ?? DEFAULT_UNDERLAY_NET);
  if (!under || under.prefixLen < 16 || under.prefixLen > 28) return `--underlay-net: must be an IPv4 CIDR from /16 to /28, got '${o.underlayNet}'`;
  if (!PRIVATE_RANGES.some((r) => r.covers(under))) return `--underlay-net: must be inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (it only exists inside the lab's namespaces), got '${o.underlayNet}'`;
  const k = o.kernelNodes ?? 0;
  if (!Number.isInteger(k) || k < 0 || k > 50) return `--kernel-nodes: must be an integer from 0 to 50, got ${k}`;
  const backend = findBackend(o.backend ?? DEFAULT_BACKEND);
  if (k > 0 && backend && !backend.kernel) return `--kernel-nodes: kernel nodes cannot run --backend ${backend.name}`;
  const wireProblem = k > 0 ? backend?.kernel?.wireProblem?.(netnsWire(o)) : undefined;
  if (wireProblem) return wireProblem;
  return validatePrefix(o.netnsPrefix ?? 'podlab');
}

/** The wire of a netns lab: raw frames for the backends with pods on the underlay unless --wire udp; tunnels ride their own UDP sockets. */
export function netnsWire(o: Pick<UpOptions, 'backend' | 'wire'>): 'udp' | 'raw' {
  if (!findBackend(o.backend ?? DEFAULT_BACKEND)?.ipUnderlay) return 'udp';
  return o.wire ?? 'raw';
}

/** What a netns lab needs beyond root and iproute2, checked before anything starts; the first thing missing. */
export function missingNetnsTools(o: Pick<UpOptions, 'backend' | 'wire' | 'kernelNodes'>, has: (tool: string) => boolean, cap: () => boolean): string | undefined {
  if (netnsWire(o) === 'raw') {
    if (!cap()) return `--wire raw (the default of --backend ${o.backend} in netns labs) needs the optional 'cap' addon (libpcap): apt-get install libpcap-dev g++ make python3, then npm rebuild cap; or use --wire udp`;
    if (!has('nft')) return '--wire raw needs nftables (the nft command), to keep the node namespaces\' kernels off the frames the emulated nodes take: apt-get install nftables; or use --wire udp';
  }
  const tools = (o.kernelNodes ?? 0) > 0 ? findBackend(o.backend ?? DEFAULT_BACKEND)?.kernel?.tools : undefined;
  if (tools && !tools.names.every(has)) return tools.hint;
  return undefined;
}

/** The Unix socket of the apiserver: in the state dir, or in /tmp when that path is too long. */
export function apiSocketPath(stateDir: string): string {
  const p = path.join(stateDir, 'api.sock');
  if (Buffer.byteLength(p) < 100) return p;
  return path.join('/tmp', `podlab-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}-api.sock`);
}

/** The pods of `--pods-per-node M` on kernel node K: pod-k<K><letter>. */
export function kernelDemoPods(kernelNodes: number, perNode: number): Pod[] {
  return demoPods(kernelNodes, perNode).map((p) => {
    const k = p.spec!.nodeName!.split('-')[1];
    const letter = p.metadata.name.slice(`pod-${k}`.length);
    return { ...p, metadata: { ...p.metadata, name: `pod-k${k}${letter}` }, spec: { ...p.spec!, nodeName: `knode-${k}` } };
  });
}

/** Brings a netns lab up; all or nothing (a failure runs `down`, which deletes what was made). */
export async function upNetns(o: UpOptions): Promise<LabRecord> {
  if (!isRoot()) throw new LabError('--mode netns needs root (it creates network namespaces, veths and a bridge); run it as root, or use the default local mode');
  if (!hasIproute2()) throw new LabError('--mode netns needs iproute2 (the ip command): apt-get install iproute2');
  const bad = validateNetnsOptions(o);
  if (bad) throw new LabError(bad);
  const missing = missingNetnsTools(o, hasTool, capAvailable);
  if (missing) throw new LabError(missing);
  validateUpOptions({ ...o, labNet: '127.0.0.0/16', mode: 'netns' }); // the remaining flags, as local mode checks them
  const wire = netnsWire(o);
  const say = o.onProgress ?? (() => {});
  const timeout = o.timeoutMs ?? 30_000;
  const prefix = o.netnsPrefix ?? 'podlab';
  const subnet = o.underlayNet ?? DEFAULT_UNDERLAY_NET;
  const prefixLen = subnet.split('/')[1];
  const kernelNodes = o.kernelNodes ?? 0;
  const backend = backendNamed(o.backend).name;
  const bin = path.join(ROOT, 'bin/podlab.js');

  await claimStateDir(o.stateDir, o.onProgress ?? (() => {}));

  const addrs = labAddresses(subnet, o.nodes + kernelNodes);
  const emulated = Array.from({ length: o.nodes }, (_, i) => ({ name: `node-${i + 1}`, ip: addrs.nodes[i], kind: 'emulated' as const }));
  const kernel = Array.from({ length: kernelNodes }, (_, i) => ({ name: `knode-${i + 1}`, ip: addrs.nodes[o.nodes + i], kind: 'kernel' as const }));
  const all = [...emulated, ...kernel].map((n) => ({ ...n, netns: netnsNames.node(prefix, n.name) }));
  const underlay = netnsNames.underlay(prefix);
  const taken = (await listNetns()).filter((n) => n === underlay || all.some((x) => x.netns === n) || all.some((x) => x.kind === 'kernel' && n.startsWith(`${x.netns}-`)));
  if (taken.length) throw new LabError(`network namespaces ${taken.join(', ')} already exist (another netns lab?): run 'podlab down' in its state dir, or choose another --netns-prefix`);

  const sock = apiSocketPath(o.stateDir);
  const rec: LabRecord = {
    version: 1,
    status: 'starting',
    stateDir: o.stateDir,
    startedAt: new Date().toISOString(),
    ownerPid: o.ownerPid,
    options: { nodes: o.nodes, labNet: subnet, apiPort: o.apiPort, clusterCidr: o.clusterCidr, vxlanPort: o.vxlanPort, wirePort: o.wirePort, seed: o.seed, mtu: o.mtu, backend, mode: 'netns', underlayNet: subnet, kernelNodes, wire },
    procs: [],
    nodes: [],
    netns: { prefix, underlay, bridge: LAB_BRIDGE, subnet, namespaces: [] },
  };
  writeLab(rec);
  /** Every namespace is in lab.json before it exists. */
  const makeNetns = async (ns: string) => {
    rec.netns!.namespaces.push(ns);
    writeLab(rec);
    await addNetns(ns);
  };
  try {
    let offloadWarn = false;
    // The underlay: one bridge, the apiserver's address on it, nothing else.
    await makeNetns(underlay);
    await ipIn(underlay, 'link', 'add', LAB_BRIDGE, 'mtu', String(o.mtu), 'type', 'bridge', 'stp_state', '0');
    await ipIn(underlay, 'addr', 'add', `${addrs.api}/${prefixLen}`, 'dev', LAB_BRIDGE);
    await ipIn(underlay, 'link', 'set', LAB_BRIDGE, 'up');
    for (const n of all) {
      await makeNetns(n.netns);
      const port = ifname('v-', n.name);
      // eth0 gets the MAC the node publishes (podlab.io/eth0-mac), as in local mode.
      await addVethPair(underlay, port, n.netns, 'eth0', o.mtu, deriveMac(o.seed, `eth0:${n.name}`));
      await ipIn(underlay, 'link', 'set', port, 'master', LAB_BRIDGE, 'up');
      await ipIn(n.netns, 'addr', 'add', `${n.ip}/${prefixLen}`, 'dev', 'eth0');
      await ipIn(n.netns, 'link', 'set', 'eth0', 'up');
      // As on a real NIC, the bridge sees complete checksums and MTU-sized frames (kernel and podlab alike).
      if (!(await wireLikeOffloads(n.netns, 'eth0'))) offloadWarn = true;
      // The kernel's vxlan device sends its datagrams with DF clear; a UDP socket sets DF
      // (path-MTU discovery) unless the namespace says otherwise: make podlab's match.
      if (n.kind === 'emulated') await sysctlIn(n.netns, { 'net.ipv4.ip_no_pmtu_disc': 1 });
    }
    if (offloadWarn) say('ethtool not found: captures on the bridge will show partial (offloaded) checksums and TCP super-packets larger than the MTU');
    say(`namespaces up: ${underlay} (bridge ${LAB_BRIDGE} ${addrs.api}/${prefixLen}), ${all.map((n) => `${n.netns} ${n.ip}`).join(', ')}`);

    prepareLabPki(o.stateDir, addrs.api, all.map((n) => n.name));
    const apiArgs = [bin, 'apiserver', '--host', addrs.api, '--port', String(o.apiPort), '--state-dir', o.stateDir, '--cluster-cidr', o.clusterCidr, '--unix-socket', sock, ...controllerArgs(o.controllerFlags)];
    if (o.store) apiArgs.push('--store', o.store);
    if (o.nodeCidrMaskSize !== undefined) apiArgs.push('--node-cidr-mask-size', String(o.nodeCidrMaskSize));
    const api = spawnLogged(o.stateDir, 'apiserver', apiArgs, underlay);
    rec.procs.push({ role: 'apiserver', name: 'apiserver', pid: api.pid, args: apiArgs, log: api.log, netns: underlay });
    writeLab(rec);
    const listening = await waitForEvent(api.log, 'listening', api.pid, timeout, api.offset);
    rec.apiInternalUrl = String(listening.url);
    rec.apiSocket = sock;
    rec.apiUrl = `unix:${sock}`;
    apiArgs[apiArgs.indexOf('--port') + 1] = new URL(rec.apiInternalUrl).port;
    writeLab(rec);
    say(`apiserver listening on ${rec.apiInternalUrl} in ${underlay}, and on ${sock}`);

    // Registered in order before the agents start: node-N gets the N-th podCIDR, knode-K the ones after.
    const client = labApi(rec);
    for (const [i, n] of all.entries()) await client.create('nodes', nodeObject(n.name, i, o));

    const started = all.map((n) => {
      let args: string[];
      let where: string | undefined;
      let role: ProcRecord['role'];
      if (n.kind === 'emulated') {
        role = 'node';
        where = n.netns;
        args = [
          bin, 'agent', '--name', n.name, '--ip', n.ip, '--underlay', subnet, '--api', rec.apiInternalUrl!, '--state-dir', o.stateDir, '--token-file', nodeTokenPath(o.stateDir, n.name),
          '--cluster-cidr', o.clusterCidr, '--vxlan-port', String(o.vxlanPort), '--seed', String(o.seed), '--mtu', String(o.mtu),
          ...agentFeatureArgs({ ...o, backend, wire }),
        ];
      } else {
        // In the root namespace: it creates pod namespaces (see kernel-node/agent.ts) and reaches the apiserver over its socket.
        role = 'kernel-node';
        args = [
          bin, 'kernel-node', '--name', n.name, '--netns', n.netns, '--ip', n.ip, '--api', rec.apiUrl!, '--state-dir', o.stateDir, '--token-file', nodeTokenPath(o.stateDir, n.name), '--vxlan-port', String(o.vxlanPort), '--mtu', String(o.mtu),
          '--backend', backend, '--bgp-port', String(o.bgpPort ?? 179), '--bgp-hold-time', String(o.bgpHoldTime ?? 9), '--bgp-topology', o.bgpTopology ?? 'full-mesh', '--cluster-cidr', o.clusterCidr,
        ];
      }
      const p = spawnLogged(o.stateDir, n.name, args, where);
      const pr: ProcRecord = { role, name: n.name, pid: p.pid, args, log: p.log, ...(where ? { netns: where } : {}) };
      rec.procs.push(pr);
      return { n, pr, offset: p.offset };
    });
    writeLab(rec);
    for (const s of started) {
      const ready = await waitForEvent(s.pr.log, 'ready', s.pr.pid, timeout, s.offset);
      const nr: NodeRecord = { name: s.n.name, ip: s.n.ip, control: String(ready.control), kind: s.n.kind, netns: s.n.netns };
      rec.nodes.push(nr);
      say(`${String(s.n.name)} ready (${String(s.n.kind)}, ${String(s.n.netns)}): ${String(s.n.ip)}, podCIDR ${String(ready.podCIDR)}, VtepMAC ${String(ready.vtepMac)}`);
    }
    writeLab(rec);

    for (const p of [...demoPods(o.nodes, o.podsPerNode), ...kernelDemoPods(kernelNodes, o.podsPerNode)]) await client.create('pods', p, 'default');
    // MetalLB's default pool, as local labs get one: <net>.200/29 of the underlay, held by the elected
    // node's eth0 (hostnet/lb-address.ts); none when node addresses would reach into it.
    const lbDefaults = 11 + all.length <= 200 ? defaultLoadBalancerObjects(subnet) : [];
    await applyObjects(client, [...lbDefaults, ...o.manifests]);
    // CoreDNS runs on emulated nodes only (its template keeps off kernel nodes): none, no replicas.
    await installClusterDns(client, { replicas: emulated.length ? 2 : 0 });
    if (o.waitReady) await waitPodsRunning(client, timeout);
    if (o.waitReady && backendNamed(backend).ipUnderlay) await waitRoutesConverged(rec, timeout, say);
    rec.status = 'running';
    writeLab(rec);
    // kubectl speaks TCP only: this kubeconfig works from inside the underlay namespace
    // (`ip netns exec <prefix>-underlay kubectl --kubeconfig <stateDir>/kubeconfig get pods`).
    writeKubeconfig(o.stateDir, rec.apiInternalUrl);
    return rec;
  } catch (e) {
    await down(o.stateDir).catch(() => {});
    throw e instanceof LabError ? e : new LabError((e as Error).message);
  }
}
