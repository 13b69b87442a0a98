/**
 * The raw-frame underlay of the unencapsulated backends (host-gw, bgp) in
 * root modes (netns labs, containers): pod packets leave on the node's real
 * eth0 as Ethernet frames with pod addresses intact, exactly what a Calico or
 * host-gw underlay carries, through libpcap (the optional `cap` addon).
 *
 * The node's namespace has two IPv4 stacks behind one eth0: the kernel's
 * (its BGP sessions on TCP 179, the apiserver connection, the real NodePort
 * sockets) and podlab's emulated node (routing pod traffic, masquerade,
 * ICMP). They split the traffic the way a NIC driver with a flow steering
 * rule would:
 *
 * - the kernel keeps TCP 179 both ways, the NodePort range (from outside the
 *   cluster: pods reach NodePorts through the emulated kube-proxy), and its own
 *   ephemeral ports, which the agent moves out of the emulated stack's way
 *   (ip_local_port_range 61000-65535; the emulated stack uses 32768-60999);
 * - everything else that is IPv4 and addressed to eth0's MAC is the emulated
 *   node's: libpcap hands it over (taps see a frame before netfilter), and an
 *   nftables rule at prerouting drops it in the kernel so it is not answered
 *   twice (a TCP RST from the kernel would kill an emulated connection).
 *
 * - the kernel also keeps underlay addresses other than the node IP: the
 *   LoadBalancer addresses an elected layer-2 node holds on eth0.
 *
 * ARP stays with the kernel: it owns the node IP and answers for it; the
 * emulated node programs its neighbours from the Nodes' eth0 MACs.
 *
 * One description of that split (`KernelOwned`) is rendered both as the
 * pcap filter (claimFilter) and as the nftables rule set (claimRuleset), so
 * the two can never disagree.
 */
import { childProcess } from '../common/lazy-builtins.ts';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { systemTool } from '../common/system-tool.ts';
import { ownNetnsName } from '../hostnet/netns.ts';

/** The kernel's ephemeral ports in a raw-wire namespace, apart from the emulated stack's 32768-60999. */
export const KERNEL_EPHEMERAL: [number, number] = [61000, 65535];

/** What the node namespace's kernel keeps for itself on eth0. */
export interface KernelOwned {
  nodeIp: string;
  mac: string;
  /** BGP's port (both directions). */
  bgpPort: number;
  /**
   * Kubernetes' NodePort range: the real NodePort sockets (clients outside
   * the cluster) are the kernel's; from a pod (clusterCidr) the emulated
   * node's kube-proxy answers, as its KUBE-NODEPORTS rules would.
   */
  nodePorts: [number, number];
  clusterCidr: string;
  /** The kernel's ephemeral ports (its client connections: BGP, the apiserver). */
  ephemeral: [number, number];
  /**
   * The underlay: addresses in it other than the node IP that reach eth0's MAC
   * are LoadBalancer addresses the kernel holds (an elected layer-2 node's, on
   * its real sockets). Left out when it overlaps the cluster CIDR.
   */
  underlay?: string;
}

/** The nftables table the agent owns in its namespace. */
export const NFT_TABLE = 'podlab_rawwire';

/** Matches what the kernel keeps, as a pcap-filter expression. */
function kernelKeepsPcap(k: KernelOwned): string {
  const range = ([lo, hi]: [number, number]) => (lo === hi ? `dst port ${lo}` : `dst portrange ${lo}-${hi}`);
  const lb = k.underlay ? ` or (dst net ${k.underlay} and not dst host ${k.nodeIp})` : '';
  return `(tcp port ${k.bgpPort}) or (dst host ${k.nodeIp} and (tcp or udp) and ((${range(k.nodePorts)} and not src net ${k.clusterCidr}) or ${range(k.ephemeral)}))${lb}`;
}

/**
 * The pcap filter for frames the emulated node takes: IPv4 to eth0's MAC,
 * less what the kernel keeps. No `inbound`: frames this node sends carry the
 * next hop's MAC, so `ether dst` already leaves them out, and with `inbound`
 * libpcap 1.10 lost the first frame after open (measured: 3 of 4 pings seen).
 */
export function claimFilter(k: KernelOwned): string {
  return `ether dst ${k.mac} and ip and not (${kernelKeepsPcap(k)})`;
}

/**
 * The nftables rule set that drops in the kernel what the emulated node took
 * (the same split as claimFilter). Priority raw (-300): before conntrack, so
 * the kernel keeps no state for packets that are not its own.
 */
export function claimRuleset(k: KernelOwned, dev = 'eth0'): string {
  const r = ([lo, hi]: [number, number]) => (lo === hi ? `${lo}` : `${lo}-${hi}`);
  return [
    `table ip ${NFT_TABLE} {`,
    '  chain claim {',
    '    type filter hook prerouting priority raw; policy accept;',
    `    iifname != "${dev}" accept`,
    `    ether daddr != ${k.mac} accept`,
    `    tcp sport ${k.bgpPort} accept`,
    `    tcp dport ${k.bgpPort} accept`,
    `    ip daddr ${k.nodeIp} ip saddr != ${k.clusterCidr} meta l4proto { tcp, udp } th dport ${r(k.nodePorts)} accept`,
    `    ip daddr ${k.nodeIp} meta l4proto { tcp, udp } th dport ${r(k.ephemeral)} accept`,
    ...(k.underlay ? [`    ip daddr ${k.underlay} ip daddr != ${k.nodeIp} accept`] : []),
    '    counter drop comment "the emulated node took it through libpcap"',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** A typed failure to bring the raw wire up (no addon, no permission, no device). */
export class RawWireError extends Error {
  override name = 'RawWireError';
}

/** The slice of `cap` used here. */
interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  send(buf: Buffer, len?: number): void;
  close(): void;
  on(ev: 'packet', fn: (nbytes: number, truncated: boolean) => void): void;
}
type CapModule = { Cap: new () => CapHandle };

/** Loads the optional `cap` addon; a RawWireError saying how to get it when it cannot. */
export function loadCap(): CapModule {
  try {
    return createRequire(import.meta.url)('cap') as CapModule;
  } catch (e) {
    throw new RawWireError(
      `raw frames need the optional 'cap' addon (libpcap), which did not load: ${(e as Error).message.split('\n')[0]}. ` +
        `Install libpcap-dev and a C++ toolchain, then 'npm rebuild cap' (or use --wire udp)`,
    );
  }
}

/**
 * cap turns on libpcap's immediate mode through dlopen("libpcap.so"), the
 * development symlink (libpcap-dev); without it frames come in blocks, up to
 * a second late. True when that name resolves in the usual library dirs.
 */
export function pcapImmediateModeLikely(): boolean {
  for (const base of ['/usr/lib', '/lib', '/usr/local/lib']) {
    try {
      if (fs.existsSync(`${base}/libpcap.so`)) return true;
      for (const d of fs.readdirSync(base)) if (fs.existsSync(`${base}/${d}/libpcap.so`)) return true;
    } catch {
      /* no such dir */
    }
  }
  return false;
}

/** True when `cap` loads (for `up` to fail early and tests to say why they skip). */
export function capAvailable(): boolean {
  try {
    loadCap();
    return true;
  } catch {
    return false;
  }
}

/**
 * Raw frames can only be put on interfaces of a lab's own namespace or
 * container: never on the host's. A named namespace must be a podlab one;
 * an unnamed one must be a container's (`/.dockerenv`).
 */
export function rawWireAllowedHere(): string | undefined {
  const named = ownNetnsName();
  if (named.startsWith('podlab-')) return undefined;
  if (!named && fs.existsSync('/.dockerenv')) return undefined;
  return named ? `this process runs in network namespace '${named}', not a podlab one` : 'this process is not in a podlab network namespace or a container (raw frames would go out on the host\'s own interface)';
}

/** Runs nftables' `nft` (by absolute path: see common/system-tool.ts) in the caller's namespace. */
function nft(args: string[], input?: string): Promise<void> {
  const bin = systemTool('nft');
  if (!bin) return Promise.reject(new RawWireError('raw frames need nftables (the nft command): apt-get install nftables'));
  return new Promise((resolve, reject) => {
    const child = childProcess().execFile(bin, args, (err, _o, stderr) => (err ? reject(new RawWireError(`nft ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve()));
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Reads and, where allowed, sets the kernel's ephemeral port range in this namespace; returns the range in force. */
function kernelEphemeralRange(): [number, number] {
  const file = '/proc/sys/net/ipv4/ip_local_port_range';
  try {
    fs.writeFileSync(file, `${KERNEL_EPHEMERAL[0]} ${KERNEL_EPHEMERAL[1]}\n`);
  } catch {
    // A container may mount /proc/sys read-only: compose sets the sysctl instead (docker-compose.yml).
  }
  const [lo, hi] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
  return [lo, hi];
}

export interface RawWireOptions {
  dev: string;
  mac: string;
  nodeIp: string;
  bgpPort: number;
  nodePorts: [number, number];
  clusterCidr: string;
  /** See KernelOwned.underlay. */
  underlay?: string;
}

/** Frames in and out of the node's real eth0. */
export class RawWire {
  private onFrame: (frame: Buffer) => void = () => {};
  sent = 0;
  received = 0;
  sendErrors = 0;
  /** Frames whose handling threw (a bug in the stack): counted, so one bad frame never stops the node. */
  handlerErrors = 0;
  /** The split in force (after the ephemeral range was read back). */
  owned?: KernelOwned;
  private cap?: CapHandle;
  private ruleset = false;

  constructor(readonly o: RawWireOptions) {}

  /** The node's eth0 takes the frames libpcap delivers. */
  attach(onFrame: (frame: Buffer) => void): void {
    this.onFrame = onFrame;
  }

  async start(): Promise<void> {
    const why = rawWireAllowedHere();
    if (why) throw new RawWireError(`refusing raw frames on ${this.o.dev}: ${why}`);
    const { Cap } = loadCap();
    const ephemeral = kernelEphemeralRange();
    if (ephemeral[1] >= 32768 && ephemeral[0] <= 60999) {
      throw new RawWireError(`the kernel's ephemeral ports ${ephemeral.join('-')} overlap the emulated node's 32768-60999: set net.ipv4.ip_local_port_range to "${KERNEL_EPHEMERAL.join(' ')}" in this namespace`);
    }
    const owned: KernelOwned = { nodeIp: this.o.nodeIp, mac: this.o.mac.toLowerCase(), bgpPort: this.o.bgpPort, nodePorts: this.o.nodePorts, clusterCidr: this.o.clusterCidr, ephemeral, underlay: this.o.underlay };
    this.owned = owned;
    await nft(['delete', 'table', 'ip', NFT_TABLE]).catch(() => {});
    await nft(['-f', '-'], claimRuleset(owned, this.o.dev));
    this.ruleset = true;
    // libpcap sizes its ring slots for 64 KB frames while the device does segmentation offload:
    // turn it off where we may (netns labs did already; a container may lack ethtool), and keep a ring
    // that holds a burst either way (16 MB: ~250 slots of 64 KB, ~8000 of an MTU).
    const ethtool = systemTool('ethtool');
    if (ethtool) await new Promise<void>((r) => childProcess().execFile(ethtool, ['-K', this.o.dev, 'tx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off'], () => r()));
    const cap = new Cap();
    const buf = Buffer.alloc(65536);
    try {
      cap.open(this.o.dev, claimFilter(owned), 16 * 1024 * 1024, buf);
    } catch (e) {
      await this.removeRuleset();
      throw new RawWireError(`libpcap could not open ${this.o.dev}: ${(e as Error).message}`);
    }
    cap.on('packet', (n) => {
      this.received++;
      try {
        // cap reuses its buffer for the next frame.
        this.onFrame(Buffer.from(buf.subarray(0, n)));
      } catch {
        // Thrown from inside libpcap's callback it would end the process.
        this.handlerErrors++;
      }
    });
    this.cap = cap;
  }

  /** Puts one complete Ethernet frame on the wire. */
  send(frame: Buffer): boolean {
    if (!this.cap) return false;
    try {
      this.cap.send(frame, frame.length);
      this.sent++;
      return true;
    } catch {
      this.sendErrors++;
      return false;
    }
  }

  private async removeRuleset(): Promise<void> {
    if (!this.ruleset) return;
    this.ruleset = false;
    await nft(['delete', 'table', 'ip', NFT_TABLE]).catch(() => {});
  }

  async close(): Promise<void> {
    this.cap?.close();
    this.cap = undefined;
    await this.removeRuleset();
  }
}
