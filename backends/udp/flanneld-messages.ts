/**
 * What crosses between a node and its flanneld thread (./flanneld.ts and
 * ./flanneld-worker.ts), and the counters flanneld keeps in memory both
 * threads see. A packet always crosses in an ArrayBuffer of its own, filled by
 * one copy and transferred: the copy read(), write(), sendto() and recvfrom()
 * make between kernel and user memory.
 */

/** node -> flanneld. `trace` is 0, or the number the node gave the traced packet's context. */
export type ToFlanneld =
  /** flanneld's table, from the leases (`subnet -> the peer's public IP`). */
  | { k: 'route'; cidr: string; publicIp: string }
  | { k: 'unroute'; cidr: string }
  /** A packet read from flannel0: bare IPv4, as read() on the TUN fd returns it. */
  | { k: 'tun'; packet: ArrayBuffer; flowHash: number; trace: number }
  /** A datagram received on UDP 8285, as recvfrom() returns it. */
  | { k: 'udp'; payload: ArrayBuffer; from: string; fromPort: number; trace: number };

/** flanneld -> node. */
export type FromFlanneld =
  /** sendto(peer, port): the bare packet is the datagram's payload. */
  | { k: 'send'; peer: string; payload: ArrayBuffer; dst: string; flowHash: number; trace: number }
  /** write() into flannel0: the packet behind a zero 14-byte header (podlab's devices move frames). */
  | { k: 'write'; frame: ArrayBuffer; src: string; dst: string; trace: number }
  /** A packet flanneld could not place; `side` says whose counters take it. */
  | { k: 'drop'; side: 'tun' | 'udp'; reason: string; text: string; trace: number };

/** The counters' slots in the shared array (flanneld adds, the node reads). */
export const COUNTERS = ['tunReads', 'tunWrites', 'sent', 'received', 'bytesCopied', 'noRoute', 'malformed'] as const;
export type CounterName = (typeof COUNTERS)[number];
export const COUNTER_SLOT = Object.fromEntries(COUNTERS.map((c, i) => [c, i])) as Record<CounterName, number>;
