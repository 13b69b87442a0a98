/**
 * Live capture on a node's virtual interfaces, as tcpdump on a real node:
 *
 * - `eth0`: the outer datagrams as they leave and enter the node. The node's
 *   real socket I/O carries only the UDP payload, so the Ethernet/IPv4/UDP
 *   headers are written here the way the kernel's vxlan device writes them
 *   (outer TTL 64, DF clear, and a real UDP checksum: Linux's vxlan device
 *   only sends 0 when created with `noudpcsum`, which neither iproute2 nor
 *   flanneld asks for; checked against the kernel on a netns lab's bridge,
 *   test/netns-lab.test.ts; peer MAC = the peer node's eth0 MAC);
 * - `flannel.1`: inner frames before encapsulation / after decapsulation;
 * - `cni0`: every frame crossing the bridge (tcpdump puts it in promiscuous mode);
 * - each host-side `vethXXXXXXXX`, and a pod's own `eth0` (`pod/NAME`);
 * - `tunl0` and `flannel0`, which have no link-layer header: their packets are
 *   written as raw IPv4 (LINKTYPE_RAW), as tcpdump on a real node writes them.
 *
 * Frames that pass the filter are handed to `emit` with the interface index,
 * direction and a nanosecond timestamp; when `emit` reports back-pressure the
 * frame is counted as dropped, as the kernel drops when a capture buffer is full.
 */
import { deriveMac } from '../../common/rng.ts';
import { buildIpv4Frame } from '../../packet/frame.ts';
import { IPPROTO_UDP } from '../../packet/ipv4.ts';
import { writeUdpHeader } from '../../packet/udp.ts';
import type { OuterTap } from '../../overlay/eth0-sockets.ts';
import type { NodeDataPlane } from '../dataplane.ts';
import { isHeaderless, type FrameTap, type NetDevice } from '../../netstack/link/netdev.ts';
import { ETHERNET_HEADER_LEN } from '../../packet/ethernet.ts';
import { compileFilter } from './filter.ts';

/** An interface that can be captured. */
export interface CaptureTarget {
  name: string;
  description: string;
  /** 'raw': packets start with the IPv4 header (ARPHRD_TUNNEL, ARPHRD_NONE); 'ethernet' otherwise. */
  link: 'ethernet' | 'raw';
  attach(cb: (frame: Buffer, dir: 'in' | 'out') => void): () => void;
}

export interface CaptureEvent {
  type: 'pkt';
  i: number;
  dir: 'in' | 'out';
  /** Nanoseconds since the epoch, as a decimal string (too large for a double). */
  ts: string;
  data: Buffer;
}

const EPOCH_OFFSET_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

function deviceTarget(dev: NetDevice, node: string, what: string): CaptureTarget {
  return {
    name: dev.name,
    description: `${what} on ${node}`,
    link: isHeaderless(dev.kind) ? 'raw' : 'ethernet',
    attach(cb) {
      const tap: FrameTap = (frame, dir) => cb(frame, dir);
      dev.taps.add(tap);
      return () => dev.taps.delete(tap);
    },
  };
}

/** The interfaces of a node that `podlab capture` can open, by name. */
export function captureTargets(dp: NodeDataPlane, node: string, seed: number, peerName: (ip: string) => string | undefined): Map<string, CaptureTarget> {
  const t = new Map<string, CaptureTarget>();
  let ipId = 0;
  const peerMac = (ip: string) => {
    const name = peerName(ip);
    return name ? deriveMac(seed, `eth0:${name}`) : '02:00:00:00:00:00';
  };
  const sockets = dp.link.sockets;
  if (!sockets) {
    // Pods on the underlay: eth0 carries the pods' own packets; its frames are the capture.
    t.set('eth0', deviceTarget(dp.eth0, node, `eth0 (underlay ${dp.opts.ip}, bare IPv4, no encapsulation)`));
  } else {
    // A backend on real UDP sockets: eth0's frames are rebuilt from the outer datagrams.
    t.set('eth0', {
      name: 'eth0',
      link: 'ethernet',
      description: `eth0 (underlay ${dp.opts.ip}, outer ${dp.link.wireKind.toUpperCase()} datagrams) on ${node}`,
      attach(cb) {
        const tap: OuterTap = (dir, peer, localPort, udpPayload) => {
          const local = dp.opts.ip;
          const [srcIp, dstIp, sport, dport] = dir === 'out' ? [local, peer.ip, localPort, peer.port] : [peer.ip, local, peer.port, localPort];
          const udp = Buffer.allocUnsafe(8 + udpPayload.length);
          udpPayload.copy(udp, 8);
          writeUdpHeader(udp, 0, { srcPort: sport, dstPort: dport }, udpPayload.length, srcIp, dstIp, { checksum: true });
          const mine = dp.eth0.mac;
          const theirs = peerMac(peer.ip);
          ipId = (ipId + 1) & 0xffff;
          const frame = buildIpv4Frame(
            { srcMac: dir === 'out' ? mine : theirs, dstMac: dir === 'out' ? theirs : mine, srcIp, dstIp },
            IPPROTO_UDP,
            udp,
            { ttl: 64, id: ipId, dontFragment: false },
          );
          cb(frame, dir);
        };
        sockets.outerTaps.add(tap);
        return () => sockets.outerTaps.delete(tap);
      },
    });
  }
  for (const d of dp.link.devices) t.set(d.dev.name, deviceTarget(d.dev, node, d.description));
  t.set('cni0', deviceTarget(dp.bridge.dev, node, 'bridge cni0'));
  for (const pod of dp.pods.values()) {
    t.set(pod.hostVeth.name, deviceTarget(pod.hostVeth, node, `host end of ${pod.key}'s veth`));
    const podIf = deviceTarget(pod.eth0, node, `eth0 of pod ${pod.key}`);
    podIf.name = `${pod.opts.name}/eth0`;
    t.set(`pod/${pod.opts.name}`, podIf);
    t.set(`pod/${pod.key}`, podIf);
  }
  return t;
}

/**
 * Runs one capture until `count` frames, `signal`, or forever; resolves with
 * what was captured and dropped.
 */
export async function runCapture(
  targets: CaptureTarget[],
  opts: { filter?: string; count?: number; signal: AbortSignal; emit: (e: CaptureEvent) => boolean },
): Promise<{ captured: number; dropped: number }> {
  const match = compileFilter(opts.filter ?? '');
  let captured = 0;
  let dropped = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const detach = targets.map((target, i) =>
    target.attach((frame, dir) => {
      if (opts.count !== undefined && captured >= opts.count) return;
      // Headerless devices' packets move inside podlab in an Ethernet frame of zero MACs: the filter reads that
      // frame (its EtherType is IPv4's), the capture keeps what the device really carries, the IP packet.
      if (!match(frame)) return;
      const ts = (EPOCH_OFFSET_NS + process.hrtime.bigint()).toString();
      // Frames may be reused by the data path after this call: copy what is kept.
      if (opts.emit({ type: 'pkt', i, dir, ts, data: Buffer.from(target.link === 'raw' ? frame.subarray(ETHERNET_HEADER_LEN) : frame) })) captured++;
      else dropped++;
      if (opts.count !== undefined && captured >= opts.count) finish();
    }),
  );
  if (opts.signal.aborted) finish();
  opts.signal.addEventListener('abort', () => finish(), { once: true });
  await done;
  for (const d of detach) d();
  return { captured, dropped };
}
