/**
 * pcapng capture writer (and a minimal reader for tests), per
 * draft-ietf-opsawg-pcapng (the "PCAP Now Generic" file format).
 *
 * Every block has the same envelope; we always write little-endian:
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                          Block Type                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                      Block Total Length                       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * /                 Block Body (padded to 32 bits)                /
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                      Block Total Length                       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Section Header Block body (type 0x0A0D0D0A, §4.1):
 *   Byte-Order Magic 0x1A2B3C4D | Major 1 | Minor 0 | Section Length (-1) | options
 * Interface Description Block body (type 1, §4.2):
 *   LinkType u16 | Reserved u16 | SnapLen u32 | options
 * Enhanced Packet Block body (type 6, §4.3):
 *   Interface ID u32 | Timestamp hi u32 | Timestamp lo u32 |
 *   Captured Len u32 | Original Len u32 | Packet Data (padded) | options
 * Option (§3.5): Code u16 | Length u16 | Value (padded to 32 bits); ends with opt_endofopt (0, 0).
 * ```
 *
 * Timestamps are written with if_tsresol = 9 (nanoseconds), so `timestampNs`
 * round-trips exactly and orderings of events closer than 1 µs survive.
 */
import { WireError } from './errors.ts';

/** LINKTYPE_ETHERNET: frames start with an Ethernet II header. */
export const LINKTYPE_ETHERNET = 1;
/** LINKTYPE_RAW: frames start with an IPv4/IPv6 header. */
export const LINKTYPE_RAW = 101;

const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 0x00000001;
const BT_EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;

/** epb_flags bits 0-1: inbound / outbound (§4.3.1). */
const EPB_DIR_IN = 1;
const EPB_DIR_OUT = 2;

const DEFAULT_SNAPLEN = 262144; // what tcpdump/dumpcap use

/** Rounds up to a multiple of 4. Arithmetic, not `& ~3`: lengths read from a file may exceed 2^31. */
const pad4 = (n: number): number => n + ((4 - (n % 4)) % 4);

type Opt = { code: number; value: Buffer };

function optionsLen(opts: Opt[]): number {
  if (opts.length === 0) return 0;
  let n = 4; // opt_endofopt
  for (const o of opts) n += 4 + pad4(o.value.length);
  return n;
}

function writeOptions(buf: Buffer, off: number, opts: Opt[]): number {
  if (opts.length === 0) return off;
  for (const o of opts) {
    buf.writeUInt16LE(o.code, off);
    buf.writeUInt16LE(o.value.length, off + 2);
    o.value.copy(buf, off + 4);
    buf.fill(0, off + 4 + o.value.length, off + 4 + pad4(o.value.length));
    off += 4 + pad4(o.value.length);
  }
  buf.writeUInt32LE(OPT_ENDOFOPT, off); // code 0, length 0
  return off + 4;
}

/** Wraps `bodyLen` bytes (written by `fill`) into a block with both length fields. */
function block(type: number, bodyLen: number, fill: (buf: Buffer, off: number) => void): Buffer {
  const total = 12 + bodyLen;
  const buf = Buffer.alloc(total);
  buf.writeUInt32LE(type, 0);
  buf.writeUInt32LE(total, 4);
  fill(buf, 8);
  buf.writeUInt32LE(total, total - 4);
  return buf;
}

function utf8Opt(code: number, s: string): Opt {
  const value = Buffer.from(s, 'utf8');
  if (value.length > 0xffff) throw new RangeError(`pcapng option ${code} of ${value.length} bytes exceeds 65535`);
  return { code, value };
}

/**
 * Wall-clock nanoseconds with hrtime resolution: the epoch offset is taken
 * once, so successive packets get distinct, monotonic timestamps even within
 * one millisecond (Date.now() alone would tie them).
 */
const EPOCH_OFFSET_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
function nowNs(): bigint {
  return EPOCH_OFFSET_NS + process.hrtime.bigint();
}

/** Options for `PcapngWriter.addInterface`. */
export interface PcapngInterfaceOptions {
  /** if_name, shown by Wireshark as frame.interface_name. */
  name: string;
  /** if_description, shown as frame.interface_description. */
  description?: string;
  /** LINKTYPE_* (default LINKTYPE_ETHERNET). */
  linkType?: number;
  /** Max bytes stored per packet; longer packets are truncated (default 262144). */
  snaplen?: number;
}

/** Options for `PcapngWriter.packet`. */
export interface PcapngPacketOptions {
  /** Nanoseconds since the Unix epoch (default: now, monotonic with ns resolution). */
  timestampNs?: bigint;
  /** Direction relative to the capturing interface, stored in epb_flags. */
  direction?: 'in' | 'out';
  /** opb_comment, shown by Wireshark as frame.comment. */
  comment?: string;
}

/**
 * Streams a pcapng section: call `header()` once, then `addInterface()` for
 * each interface, then `packet()` for each frame, writing the returned blocks
 * in order (to a file, or stdout for `podlab capture | wireshark -k -i -`).
 * Interfaces may be added between packets; a packet may only reference an
 * interface whose block was emitted earlier.
 */
export class PcapngWriter {
  private readonly application: string | undefined;
  private readonly snaplens: number[] = [];

  constructor(opts?: { application?: string }) {
    this.application = opts?.application;
  }

  /** The Section Header Block, with shb_userappl if `application` was given. */
  header(): Buffer {
    const opts: Opt[] = this.application ? [utf8Opt(SHB_USERAPPL, this.application)] : [];
    return block(BT_SHB, 16 + optionsLen(opts), (buf, off) => {
      buf.writeUInt32LE(BYTE_ORDER_MAGIC, off);
      buf.writeUInt16LE(1, off + 4); // major
      buf.writeUInt16LE(0, off + 6); // minor
      buf.writeBigInt64LE(-1n, off + 8); // section length unknown: we stream
      writeOptions(buf, off + 16, opts);
    });
  }

  /** Declares an interface. Returns its id (for `packet`) and its Interface Description Block. */
  addInterface(opts: PcapngInterfaceOptions): { id: number; block: Buffer } {
    const linkType = opts.linkType ?? LINKTYPE_ETHERNET;
    const snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(linkType) || linkType < 0 || linkType > 0xffff) throw new RangeError(`invalid link type ${linkType}`);
    if (!Number.isInteger(snaplen) || snaplen < 0 || snaplen > 0xffffffff) throw new RangeError(`invalid snaplen ${snaplen}`);
    const options: Opt[] = [utf8Opt(IF_NAME, opts.name)];
    if (opts.description !== undefined) options.push(utf8Opt(IF_DESCRIPTION, opts.description));
    options.push({ code: IF_TSRESOL, value: Buffer.from([9]) }); // 10^-9 s
    const id = this.snaplens.length;
    this.snaplens.push(snaplen);
    const blk = block(BT_IDB, 8 + optionsLen(options), (buf, off) => {
      buf.writeUInt16LE(linkType, off);
      buf.writeUInt16LE(0, off + 2);
      buf.writeUInt32LE(snaplen, off + 4);
      writeOptions(buf, off + 8, options);
    });
    return { id, block: blk };
  }

  /** An Enhanced Packet Block for `data` captured on interface `ifId`. Throws RangeError for an unknown interface. */
  packet(ifId: number, data: Buffer, opts?: PcapngPacketOptions): Buffer {
    const snaplen = this.snaplens[ifId];
    if (snaplen === undefined) throw new RangeError(`unknown pcapng interface id ${ifId}`);
    const capLen = snaplen === 0 ? data.length : Math.min(data.length, snaplen); // 0 = no limit
    const ts = opts?.timestampNs ?? nowNs();
    const options: Opt[] = [];
    if (opts?.comment !== undefined) options.push(utf8Opt(OPT_COMMENT, opts.comment));
    if (opts?.direction !== undefined) {
      const flags = Buffer.alloc(4);
      flags.writeUInt32LE(opts.direction === 'in' ? EPB_DIR_IN : EPB_DIR_OUT);
      options.push({ code: EPB_FLAGS, value: flags });
    }
    return block(BT_EPB, 20 + pad4(capLen) + optionsLen(options), (buf, off) => {
      buf.writeUInt32LE(ifId, off);
      buf.writeUInt32LE(Number((ts >> 32n) & 0xffffffffn), off + 4);
      buf.writeUInt32LE(Number(ts & 0xffffffffn), off + 8);
      buf.writeUInt32LE(capLen, off + 12);
      buf.writeUInt32LE(data.length, off + 16);
      data.copy(buf, off + 20, 0, capLen); // padding already zero (Buffer.alloc)
      writeOptions(buf, off + 20 + pad4(capLen), options);
    });
  }
}

/** An interface as read back by `readPcapng`. */
export interface PcapngInterface {
  name: string;
  description: string;
  linkType: number;
}

/** A packet as read back by `readPcapng`. */
export interface PcapngPacket {
  ifId: number;
  timestampNs: bigint;
  data: Buffer;
  direction?: 'in' | 'out';
  comment?: string;
}

/** Parses the options area [off, end) into code -> first value. */
function readOptions(buf: Buffer, off: number, end: number, le: boolean): Map<number, Buffer> | WireError {
  const out = new Map<number, Buffer>();
  while (off + 4 <= end) {
    const code = le ? buf.readUInt16LE(off) : buf.readUInt16BE(off);
    const len = le ? buf.readUInt16LE(off + 2) : buf.readUInt16BE(off + 2);
    if (code === OPT_ENDOFOPT) break;
    if (off + 4 + len > end) return new WireError('pcapng', 'truncated', `option ${code} overruns its block`);
    if (!out.has(code)) out.set(code, buf.subarray(off + 4, off + 4 + len));
    off += 4 + pad4(len);
  }
  return out;
}

/** Nanoseconds per timestamp unit for an if_tsresol value (default 10^-6, §4.2). */
function unitsToNs(tsresol: number | undefined): (units: bigint) => bigint {
  const r = tsresol ?? 6;
  const exp = r & 0x7f;
  if (r & 0x80) return (u) => (u * 1_000_000_000n) >> BigInt(exp); // 2^-exp seconds
  if (exp <= 9) {
    const mul = 10n ** BigInt(9 - exp);
    return (u) => u * mul;
  }
  const div = 10n ** BigInt(exp - 9);
  return (u) => u / div;
}

/**
 * Minimal pcapng reader (for tests and `podlab` self-checks): SHB (either byte
 * order), IDB and EPB; other block types are skipped. Only a single section
 * is expected; a second SHB resets the interface list as the format requires.
 * Never throws: malformed input yields a WireError with layer 'pcapng'.
 */
export function readPcapng(buf: Buffer): { interfaces: PcapngInterface[]; packets: PcapngPacket[] } | WireError {
  const interfaces: PcapngInterface[] = [];
  const tsConv: ((u: bigint) => bigint)[] = [];
  const packets: PcapngPacket[] = [];
  let le = true;
  let off = 0;
  let sawShb = false;
  while (off < buf.length) {
    if (off + 12 > buf.length) return new WireError('pcapng', 'truncated', `block header at ${off} is truncated`);
    // The SHB type is a byte-order palindrome; the byte order comes from its magic.
    const type = buf.readUInt32LE(off) === BT_SHB ? BT_SHB : le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
    if (type === BT_SHB) {
      const magic = buf.readUInt32LE(off + 8);
      if (magic === BYTE_ORDER_MAGIC) le = true;
      else if (magic === 0x4d3c2b1a) le = false;
      else return new WireError('pcapng', 'bad-value', `bad byte-order magic 0x${magic.toString(16)}`);
    } else if (!sawShb) {
      return new WireError('pcapng', 'bad-value', 'file does not start with a Section Header Block');
    }
    const total = le ? buf.readUInt32LE(off + 4) : buf.readUInt32BE(off + 4);
    if (total < 12 || total % 4 !== 0) return new WireError('pcapng', 'bad-length', `block at ${off} has total length ${total}`);
    if (off + total > buf.length) return new WireError('pcapng', 'truncated', `block at ${off} (${total} bytes) runs past end of file`);
    const trailer = le ? buf.readUInt32LE(off + total - 4) : buf.readUInt32BE(off + total - 4);
    if (trailer !== total) return new WireError('pcapng', 'bad-length', `block at ${off}: trailing length ${trailer} != ${total}`);
    const body = off + 8;
    const end = off + total - 4;
    const u16 = (o: number): number => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
    const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));

    if (type === BT_SHB) {
      if (total < 28) return new WireError('pcapng', 'truncated', 'Section Header Block too short');
      if (u16(body + 4) !== 1) return new WireError('pcapng', 'unsupported', `pcapng major version ${u16(body + 4)}`);
      sawShb = true;
      interfaces.length = 0;
      tsConv.length = 0;
    } else if (type === BT_IDB) {
      if (body + 8 > end) return new WireError('pcapng', 'truncated', 'Interface Description Block too short');
      const opts = readOptions(buf, body + 8, end, le);
      if (opts instanceof WireError) return opts;
      interfaces.push({
        name: opts.get(IF_NAME)?.toString('utf8') ?? '',
        description: opts.get(IF_DESCRIPTION)?.toString('utf8') ?? '',
        linkType: u16(body),
      });
      const tsresol = opts.get(IF_TSRESOL);
      tsConv.push(unitsToNs(tsresol && tsresol.length >= 1 ? tsresol[0] : undefined));
    } else if (type === BT_EPB) {
      if (body + 20 > end) return new WireError('pcapng', 'truncated', 'Enhanced Packet Block too short');
      const ifId = u32(body);
      if (ifId >= interfaces.length) return new WireError('pcapng', 'bad-value', `packet references undeclared interface ${ifId}`);
      const units = (BigInt(u32(body + 4)) << 32n) | BigInt(u32(body + 8));
      const capLen = u32(body + 12);
      const dataEnd = body + 20 + pad4(capLen);
      if (dataEnd > end) return new WireError('pcapng', 'bad-length', `captured length ${capLen} overruns its block`);
      const pkt: PcapngPacket = { ifId, timestampNs: tsConv[ifId](units), data: buf.subarray(body + 20, body + 20 + capLen) };
      const opts = readOptions(buf, dataEnd, end, le);
      if (opts instanceof WireError) return opts;
      const flags = opts.get(EPB_FLAGS);
      if (flags && flags.length >= 4) {
        const dir = (le ? flags.readUInt32LE(0) : flags.readUInt32BE(0)) & 3;
        if (dir === EPB_DIR_IN) pkt.direction = 'in';
        else if (dir === EPB_DIR_OUT) pkt.direction = 'out';
      }
      const comment = opts.get(OPT_COMMENT);
      if (comment) pkt.comment = comment.toString('utf8');
      packets.push(pkt);
    }
    off += total;
  }
  if (!sawShb) return new WireError('pcapng', 'truncated', 'empty file: no Section Header Block');
  return { interfaces, packets };
}
