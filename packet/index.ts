/**
 * podlab wire codecs: parse/serialize for Ethernet, ARP, IPv4 (+ fragmentation),
 * ICMP, UDP, VXLAN, and a pcapng writer. See each module's header for the
 * RFC layout and conventions (parsers return WireError, never throw).
 */
export * from './errors.ts';
export * from './addr.ts';
export * from './checksum.ts';
export * from './ethernet.ts';
export * from './arp.ts';
export * from './ipv4.ts';
export * from './ipv4-packet.ts';
export * from './cidr.ts';
export * from './icmp.ts';
export * from './udp.ts';
export * from './tcp.ts';
export * from './vxlan.ts';
export * from './pcapng.ts';
export * from './frame.ts';
export * from './dns.ts';
export * from './proxy-protocol.ts';
