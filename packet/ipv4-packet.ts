/**
 * A read-mostly view over an IPv4 datagram in a Buffer (smoltcp's
 * `Ipv4Packet<T>`): field accessors read the bytes where they lie, no Repr is
 * built. `Ipv4Packet.checked` does the length checks once (smoltcp's
 * `new_checked`), after which no accessor can read past the buffer;
 * `Ipv4Packet.quoted` accepts the truncated copy an ICMP error carries.
 *
 * The setters rewrite in place and keep every checksum valid incrementally
 * (RFC 1624), as the kernel's forwarding and NAT paths do: TTL (header
 * checksum), addresses (header and TCP/UDP pseudo-header checksum), ports and
 * the ICMP echo id (the L4 checksum).
 *
 * Layout: see ipv4.ts.
 */
import { intToIpv4, ipv4ToInt } from './addr.ts';
import { checksumAdjust, checksumAdjust32, foldChecksum, onesComplementSum } from './checksum.ts';
import { WireError } from './errors.ts';

import { CHECKSUM, DST, FLAGS_FRAG, IDENT, PROTOCOL, SRC, TOTAL_LEN, TTL } from './ipv4-layout.ts';
import { IPPROTO_ICMP as PROTO_ICMP, IPPROTO_TCP as PROTO_TCP, IPPROTO_UDP as PROTO_UDP, IPV4_HEADER_LEN as MIN_HEADER } from './ipv4.ts';

export class Ipv4Packet {
  /** Header length in bytes (IHL × 4). */
  readonly headerLen: number;
  /** End of the datagram inside `buffer`: the total length, or the buffer's end for a quoted (truncated) header. */
  private readonly end: number;
  /** Set by every setter: whoever handed the view out learns that its bytes changed (netfilter hooks rewrite in place). */
  modified = false;

  private constructor(
    /** The bytes, starting at the IPv4 header; may extend past the datagram (Ethernet padding). */
    readonly buffer: Buffer,
    headerLen: number,
    end: number,
  ) {
    this.headerLen = headerLen;
    this.end = end;
  }

  /**
   * The structural checks of Linux's ip_rcv_core (and smoltcp's check_len),
   * not the checksum: at least 20 bytes, version 4, IHL >= 5, the header
   * inside the buffer, total length between the header length and the buffer
   * length. After this no accessor fails.
   */
  static checked(buf: Buffer): Ipv4Packet | WireError {
    if (buf.length < MIN_HEADER) return new WireError('ipv4', 'truncated', `${buf.length} bytes is shorter than the 20-byte IPv4 header`);
    if (buf[0] >> 4 !== 4) return new WireError('ipv4', 'bad-version', `IP version ${buf[0] >> 4}, expected 4`);
    const hlen = (buf[0] & 0x0f) << 2;
    if (hlen < MIN_HEADER) return new WireError('ipv4', 'bad-ihl', `IHL ${buf[0] & 0x0f} is below the minimum of 5`);
    if (hlen > buf.length) return new WireError('ipv4', 'truncated', `IHL says ${hlen} header bytes but only ${buf.length} present`);
    const total = (buf[TOTAL_LEN] << 8) | buf[TOTAL_LEN + 1];
    if (total < hlen) return new WireError('ipv4', 'bad-length', `total length ${total} is smaller than the ${hlen}-byte header`);
    if (total > buf.length) return new WireError('ipv4', 'truncated', `total length ${total} exceeds the ${buf.length} bytes present`);
    return new Ipv4Packet(buf, hlen, total);
  }

  /**
   * The IPv4 header quoted inside an ICMP error (RFC 792: the header plus the
   * first 8 bytes of data, so the total length usually exceeds what is there):
   * the header must be present, the payload is whatever follows it.
   */
  static quoted(buf: Buffer): Ipv4Packet | WireError {
    if (buf.length < MIN_HEADER) return new WireError('ipv4', 'truncated', `${buf.length} bytes is shorter than the 20-byte IPv4 header`);
    if (buf[0] >> 4 !== 4) return new WireError('ipv4', 'bad-version', `IP version ${buf[0] >> 4}, expected 4`);
    const hlen = (buf[0] & 0x0f) << 2;
    if (hlen < MIN_HEADER) return new WireError('ipv4', 'bad-ihl', `IHL ${buf[0] & 0x0f} is below the minimum of 5`);
    if (hlen > buf.length) return new WireError('ipv4', 'truncated', `IHL says ${hlen} header bytes but only ${buf.length} present`);
    const total = (buf[TOTAL_LEN] << 8) | buf[TOTAL_LEN + 1];
    return new Ipv4Packet(buf, hlen, Math.max(hlen, Math.min(total, buf.length)));
  }

  /**
   * A view over a datagram some parser already accepted (parseIpv4, or a
   * packet this node built): no checks, for the per-packet paths.
   */
  static unchecked(buf: Buffer): Ipv4Packet {
    return new Ipv4Packet(buf, (buf[0] & 0x0f) << 2, (buf[TOTAL_LEN] << 8) | buf[TOTAL_LEN + 1]);
  }

  get version(): number {
    return this.buffer[0] >> 4;
  }

  /** The IHL field (32-bit words). */
  get ihl(): number {
    return this.buffer[0] & 0x0f;
  }

  get dscp(): number {
    return this.buffer[1] >> 2;
  }

  get ecn(): number {
    return this.buffer[1] & 0x03;
  }

  /** The Total Length field. */
  get totalLen(): number {
    return (this.buffer[TOTAL_LEN] << 8) | this.buffer[TOTAL_LEN + 1];
  }

  get ident(): number {
    return (this.buffer[IDENT] << 8) | this.buffer[IDENT + 1];
  }

  get dontFragment(): boolean {
    return (this.buffer[FLAGS_FRAG] & 0x40) !== 0;
  }

  get moreFragments(): boolean {
    return (this.buffer[FLAGS_FRAG] & 0x20) !== 0;
  }

  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragmentOffset(): number {
    return (((this.buffer[FLAGS_FRAG] & 0x1f) << 8) | this.buffer[FLAGS_FRAG + 1]) << 3;
  }

  /** A non-first fragment: no transport header inside. */
  get isLaterFragment(): boolean {
    return ((this.buffer[FLAGS_FRAG] & 0x1f) | this.buffer[FLAGS_FRAG + 1]) !== 0;
  }

  /** Any fragment, first or later. */
  get isFragment(): boolean {
    return this.moreFragments || this.isLaterFragment;
  }

  get ttl(): number {
    return this.buffer[TTL];
  }

  get protocol(): number {
    return this.buffer[PROTOCOL];
  }

  get checksum(): number {
    return (this.buffer[CHECKSUM] << 8) | this.buffer[CHECKSUM + 1];
  }

  /** Source address as an unsigned 32-bit integer. */
  get srcInt(): number {
    return this.buffer.readUInt32BE(SRC);
  }

  /** Destination address as an unsigned 32-bit integer. */
  get dstInt(): number {
    return this.buffer.readUInt32BE(DST);
  }

  get src(): string {
    return intToIpv4(this.srcInt);
  }

  get dst(): string {
    return intToIpv4(this.dstInt);
  }

  /** The header bytes, options included. */
  get header(): Buffer {
    return this.buffer.subarray(0, this.headerLen);
  }

  /** The options bytes (empty when IHL = 5). */
  get options(): Buffer {
    return this.buffer.subarray(MIN_HEADER, this.headerLen);
  }

  /** The data after the header, up to the total length (Ethernet padding excluded). */
  get payload(): Buffer {
    return this.buffer.subarray(this.headerLen, this.end);
  }

  /** The datagram: header and payload, without trailing padding. */
  get datagram(): Buffer {
    return this.buffer.subarray(0, this.end);
  }

  /** True if the header checksum verifies. */
  verifyChecksum(): boolean {
    return foldChecksum(onesComplementSum(this.buffer, 0, this.headerLen)) === 0xffff;
  }

  /**
   * TCP/UDP source port of a first fragment with at least 4 bytes of
   * transport header; -1 otherwise (other protocols, later fragments).
   */
  get srcPort(): number {
    return this.hasPorts() ? this.buffer.readUInt16BE(this.headerLen) : -1;
  }

  /** TCP/UDP destination port, as {@link srcPort}; -1 when there is none. */
  get dstPort(): number {
    return this.hasPorts() ? this.buffer.readUInt16BE(this.headerLen + 2) : -1;
  }

  /** The TCP flags byte of a first fragment carrying a TCP header; -1 otherwise. */
  get tcpFlags(): number {
    return this.protocol === PROTO_TCP && !this.isLaterFragment && this.end - this.headerLen >= 14 ? this.buffer[this.headerLen + 13] : -1;
  }

  private hasPorts(): boolean {
    const p = this.buffer[PROTOCOL];
    return (p === PROTO_TCP || p === PROTO_UDP) && !this.isLaterFragment && this.end - this.headerLen >= 4;
  }

  // ------------------------------------------------------------ in-place edits

  /** Sets the TTL, patching the header checksum (TTL shares its word with Protocol). */
  setTtl(ttl: number): void {
    const b = this.buffer;
    const old = b[TTL];
    if (old === ttl) return;
    this.modified = true;
    const proto = b[PROTOCOL];
    const nc = checksumAdjust(this.checksum, (old << 8) | proto, ((ttl & 0xff) << 8) | proto);
    b[TTL] = ttl;
    b[CHECKSUM] = nc >> 8;
    b[CHECKSUM + 1] = nc & 0xff;
  }

  /** Source address rewrite (SNAT): header checksum and the TCP/UDP pseudo-header checksum follow. */
  setSrc(ip: number | string): void {
    this.setAddr(SRC, typeof ip === 'number' ? ip >>> 0 : ipv4ToInt(ip));
  }

  /** Destination address rewrite (DNAT), as {@link setSrc}. */
  setDst(ip: number | string): void {
    this.setAddr(DST, typeof ip === 'number' ? ip >>> 0 : ipv4ToInt(ip));
  }

  /** TCP/UDP source port rewrite; no-op without ports. */
  setSrcPort(port: number): void {
    if (this.hasPorts()) this.setL4Word(0, port);
  }

  /** TCP/UDP destination port rewrite; no-op without ports. */
  setDstPort(port: number): void {
    if (this.hasPorts()) this.setL4Word(2, port);
  }

  /** The id of an ICMP echo request/reply (what NAT rewrites for pings); -1 for anything else. */
  get icmpEchoId(): number {
    const b = this.buffer;
    const h = this.headerLen;
    if (b[PROTOCOL] !== PROTO_ICMP || this.isLaterFragment || this.end - h < 8 || (b[h] !== 8 && b[h] !== 0)) return -1;
    return b.readUInt16BE(h + 4);
  }

  /** Rewrites an ICMP echo id, patching the ICMP checksum; no-op for other packets. */
  setIcmpEchoId(id: number): void {
    if (this.icmpEchoId < 0) return;
    this.setL4Word(4, id);
  }

  /** Recomputes the header checksum from scratch. */
  fillChecksum(): void {
    const b = this.buffer;
    this.modified = true;
    b[CHECKSUM] = 0;
    b[CHECKSUM + 1] = 0;
    const sum = ~foldChecksum(onesComplementSum(b, 0, this.headerLen)) & 0xffff;
    b[CHECKSUM] = sum >> 8;
    b[CHECKSUM + 1] = sum & 0xff;
  }

  /** Offset (from the transport header) of the TCP/UDP checksum that covers addresses, or -1 (none, or UDP without one). */
  private l4ChecksumOffset(): number {
    if (this.isLaterFragment) return -1;
    const p = this.buffer[PROTOCOL];
    const h = this.headerLen;
    const room = this.end - h;
    if (p === PROTO_TCP) return room >= 18 ? 16 : -1;
    if (p === PROTO_UDP) return room >= 8 && this.buffer.readUInt16BE(h + 6) !== 0 ? 6 : -1;
    return -1;
  }

  private setAddr(off: number, v: number): void {
    const b = this.buffer;
    const old = b.readUInt32BE(off);
    if (old === v) return;
    this.modified = true;
    const l4ck = this.l4ChecksumOffset();
    b.writeUInt32BE(v, off);
    const hc = checksumAdjust32(this.checksum, old, v);
    b[CHECKSUM] = hc >> 8;
    b[CHECKSUM + 1] = hc & 0xff;
    if (l4ck >= 0) {
      const at = this.headerLen + l4ck;
      b.writeUInt16BE(checksumAdjust32(b.readUInt16BE(at), old, v), at);
    }
  }

  /** Rewrites a 16-bit transport word and patches the checksum that covers it (ICMP's or TCP/UDP's). */
  private setL4Word(off: number, v: number): void {
    const b = this.buffer;
    const at = this.headerLen + off;
    const old = b.readUInt16BE(at);
    if (old === v) return;
    this.modified = true;
    b.writeUInt16BE(v, at);
    const ck = b[PROTOCOL] === PROTO_ICMP ? 2 : this.l4ChecksumOffset();
    if (ck < 0) return;
    const ckAt = this.headerLen + ck;
    b.writeUInt16BE(checksumAdjust(b.readUInt16BE(ckAt), old, v), ckAt);
  }
}
