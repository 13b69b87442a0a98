/**
 * flanneld itself: a thread of its own in the node's process, as flanneld was
 * a process of its own on the node (./flanneld.ts starts it, one per node,
 * only on nodes of the udp backend). It holds flanneld's table of subnets and
 * runs its two loops (flannel's proxy.c): tun_to_udp, a packet read from
 * flannel0 looked up and sent to the peer's UDP 8285 bare; udp_to_tun, a
 * datagram received on 8285 checked and written into flannel0. Every packet
 * arrives in a buffer the node copied for it and leaves in one flanneld
 * copied: the copies across the kernel/user boundary, counted here as they
 * happen in memory the node reads for `stats`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isWireError } from '../../packet/errors.ts';
import { Cidr } from '../../packet/cidr.ts';
import { parseIpv4, readIpv4Dst } from '../../packet/ipv4.ts';
import { COUNTER_SLOT, type CounterName, type FromFlanneld, type ToFlanneld } from './flanneld-messages.ts';

const ETH_HEADER = 14;
const port = parentPort;
if (!port) throw new Error('flanneld-worker runs as a worker thread');
const counters = new BigUint64Array((workerData as { counters: SharedArrayBuffer }).counters);
const count = (c: CounterName, n = 1) => Atomics.add(counters, COUNTER_SLOT[c], BigInt(n));

/** Subnet -> peer public IP (flanneld's in-memory route table, from the leases). */
const routes = new Map<string, { cidr: Cidr; publicIp: string }>();

function lookup(dst: string): string | undefined {
  let best: { len: number; ip: string } | undefined;
  for (const r of routes.values()) if (r.cidr.contains(dst) && (!best || r.cidr.prefixLen > best.len)) best = { len: r.cidr.prefixLen, ip: r.publicIp };
  return best?.ip;
}

function post(m: FromFlanneld, transfer: ArrayBuffer[]): void {
  port!.postMessage(m, transfer);
}

/** tun_to_udp: one read() (the node's copy) and one sendto() (this copy) per packet. */
function fromTun(m: Extract<ToFlanneld, { k: 'tun' }>): void {
  const packet = Buffer.from(m.packet);
  count('tunReads');
  count('bytesCopied', packet.length);
  if (packet.length < 20 || packet[0] >> 4 !== 4) {
    count('malformed');
    post({ k: 'drop', side: 'tun', reason: 'flanneld-not-ipv4', text: `read ${packet.length} bytes from flannel0: not an IPv4 packet: dropped`, trace: m.trace }, []);
    return;
  }
  const dst = readIpv4Dst(packet);
  const peer = lookup(dst);
  if (!peer) {
    // flanneld logs "No route found for ..." and drops it.
    count('noRoute');
    post({ k: 'drop', side: 'tun', reason: 'flanneld-no-route', text: `read ${packet.length} bytes from flannel0: no subnet for ${dst} in flanneld's table: dropped`, trace: m.trace }, []);
    return;
  }
  const payload = new ArrayBuffer(packet.length);
  new Uint8Array(payload).set(packet);
  count('sent');
  count('bytesCopied', packet.length);
  post({ k: 'send', peer, payload, dst, flowHash: m.flowHash, trace: m.trace }, [payload]);
}

/** udp_to_tun: one recvfrom() (the node's copy) and one write() (this copy) per datagram. */
function fromUdp(m: Extract<ToFlanneld, { k: 'udp' }>): void {
  const buf = Buffer.from(m.payload);
  count('received');
  count('bytesCopied', buf.length);
  const ip = parseIpv4(buf);
  if (isWireError(ip)) {
    count('malformed');
    post({ k: 'drop', side: 'udp', reason: `malformed-flannel-udp:${ip.reason}`, text: `datagram from ${m.from}:${m.fromPort} is not an IPv4 packet (${ip.reason}): dropped`, trace: m.trace }, []);
    return;
  }
  // The IP packet's own length: anything after it in the datagram is not written.
  const len = 20 + (ip.options?.length ?? 0) + ip.payload.length;
  const frame = new ArrayBuffer(ETH_HEADER + len);
  const bytes = new Uint8Array(frame);
  bytes[12] = 0x08; // ethertype IPv4 behind zero MACs
  bytes.set(buf.subarray(0, len), ETH_HEADER);
  count('tunWrites');
  count('bytesCopied', len);
  post({ k: 'write', frame, src: ip.src, dst: ip.dst, trace: m.trace }, [frame]);
}

port.on('message', (m: ToFlanneld) => {
  switch (m.k) {
    case 'tun':
      return fromTun(m);
    case 'udp':
      return fromUdp(m);
    case 'route':
      routes.set(m.cidr, { cidr: Cidr.parse(m.cidr), publicIp: m.publicIp });
      return;
    case 'unroute':
      routes.delete(m.cidr);
      return;
  }
});
