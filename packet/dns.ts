/**
 * DNS messages (RFC 1035 section 4), as carried in a UDP payload.
 *
 * ```text
 *  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
 * +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 * |                      ID                       |
 * |QR|   Opcode  |AA|TC|RD|RA| Z|AD|CD|   RCODE   |
 * |                    QDCOUNT                    |
 * |                    ANCOUNT                    |
 * |                    NSCOUNT                    |
 * |                    ARCOUNT                    |
 * +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 * question: QNAME QTYPE QCLASS;  RR: NAME TYPE CLASS TTL RDLENGTH RDATA
 * ```
 *
 * Names are compressed on write (RFC 1035 4.1.4: a suffix already written
 * is replaced by a 2-byte pointer), in owner names and in the RDATA of the
 * types RFC 3597 allows it for (CNAME, PTR, NS, SOA; never SRV's target, per
 * RFC 2782). On read, pointers must point strictly backwards, which makes a
 * pointer loop impossible, and a name is limited to 255 bytes, as BIND and
 * Linux's dn_expand enforce.
 *
 * Types podlab does not decode (OPT, HTTPS, ...) keep their raw RDATA, so
 * dig's EDNS OPT record in the additional section survives a round trip.
 */
import { WireError } from './errors.ts';

export const DNS_HEADER_LEN = 12;

/** Record types podlab decodes (RFC 1035, 3596, 2782, 6891). */
export const DnsType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const DNS_CLASS_IN = 1;

/** Response codes (RFC 1035 4.1.1). */
export const DnsRcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DnsType).map(([k, v]) => [v, k]));
const RCODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DnsRcode).map(([k, v]) => [v, k]));

/** `A`, `SRV`, or `TYPE65` for types without a mnemonic (RFC 3597's form). */
export function dnsTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `TYPE${t}`;
}

/** `NOERROR`, `NXDOMAIN`, or `RCODE11`. */
export function dnsRcodeName(r: number): string {
  return RCODE_NAMES[r] ?? `RCODE${r}`;
}

/** The header's flag bits, by name. */
export interface DnsFlags {
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** The reserved Z bit (must be zero; kept as read). */
  z: boolean;
  ad: boolean;
  cd: boolean;
  rcode: number;
}

export interface DnsQuestion {
  /** Fully qualified, without the trailing dot, lower case kept as sent (`web.default.svc.cluster.local`); the root is ``. */
  name: string;
  type: number;
  class: number;
}

export interface SoaData {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/** RDATA by type; anything else stays raw. */
export type DnsRdata =
  | { type: 1; address: string }
  | { type: 28; address: string }
  | { type: 2 | 5 | 12; target: string }
  | { type: 6; soa: SoaData }
  | { type: 16; texts: Buffer[] }
  | { type: 33; srv: SrvData }
  | { type: number; raw: Buffer };

export interface DnsRecord {
  name: string;
  type: number;
  /** For OPT this is the requestor's UDP payload size (RFC 6891). */
  class: number;
  ttl: number;
  data: DnsRdata;
}

export interface DnsMessage {
  id: number;
  flags: DnsFlags;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

/** Header flags with everything off, overridden by `f`. */
export function dnsFlags(f: Partial<DnsFlags> = {}): DnsFlags {
  return { qr: false, opcode: 0, aa: false, tc: false, rd: false, ra: false, z: false, ad: false, cd: false, rcode: 0, ...f };
}

function err(reason: 'truncated' | 'bad-length' | 'bad-value', msg: string): WireError {
  return new WireError('dns', reason, msg);
}

/* ------------------------------------------------------------------ read */

const MAX_NAME = 255;

/**
 * Reads a (possibly compressed) name at `off`. Returns the name and where the
 * name's bytes end in place (after the first pointer, if any).
 */
export function readName(buf: Buffer, off: number): { name: string; end: number } | WireError {
  const labels: string[] = [];
  let pos = off;
  let end = -1;
  let wire = 1; // the root's zero byte
  // Each pointer must go strictly below the lowest offset visited so far: no loops, bounded work.
  let floor = off;
  for (;;) {
    if (pos >= buf.length) return err('truncated', `name at ${off} runs past the end of the message`);
    const len = buf[pos];
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return err('truncated', `compression pointer at ${pos} is cut off`);
      const target = ((len & 0x3f) << 8) | buf[pos + 1];
      if (end < 0) end = pos + 2;
      if (target >= floor) return err('bad-value', `compression pointer at ${pos} to ${target} does not point backwards`);
      floor = target;
      pos = target;
      continue;
    }
    if (kind !== 0) return err('bad-value', `label type 0x${kind.toString(16)} at ${pos} is not supported (RFC 6891 retired extended labels)`);
    if (pos + 1 + len > buf.length) return err('truncated', `label at ${pos} of ${len} bytes runs past the end`);
    wire += len + 1;
    if (wire > MAX_NAME) return err('bad-length', `name at ${off} is longer than ${MAX_NAME} bytes`);
    labels.push(escapeLabel(buf.subarray(pos + 1, pos + 1 + len)));
    pos += 1 + len;
  }
  return { name: labels.join('.'), end };
}

/** Presentation form of a label: dots, backslashes and non-printables escaped as dig prints them (`\.`, `\\`, `\007`). */
function escapeLabel(b: Buffer): string {
  let s = '';
  for (const c of b) {
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

/** Splits a presentation name into label bytes (undoing escapeLabel); undefined if malformed. */
export function nameLabels(name: string): Buffer[] | undefined {
  const n = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  if (n === '') return [];
  const labels: Buffer[] = [];
  let cur: number[] = [];
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c === 0x5c) {
      const d = /^\d{3}/.exec(n.slice(i + 1));
      if (d) {
        const v = Number(d[0]);
        if (v > 255) return undefined;
        cur.push(v);
        i += 3;
      } else if (i + 1 < n.length) {
        cur.push(n.charCodeAt(++i));
      } else return undefined;
    } else if (c === 0x2e) {
      if (!cur.length) return undefined;
      labels.push(Buffer.from(cur));
      cur = [];
    } else {
      if (c > 0x7e) return undefined;
      cur.push(c);
    }
  }
  if (!cur.length) return undefined;
  labels.push(Buffer.from(cur));
  if (labels.some((l) => l.length > 63)) return undefined;
  if (labels.reduce((s, l) => s + l.length + 1, 1) > MAX_NAME) return undefined;
  return labels;
}

function u16(b: Buffer, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

function readRdata(buf: Buffer, type: number, start: number, len: number): DnsRdata | WireError {
  const end = start + len;
  const raw = buf.subarray(start, end);
  const nameIn = (at: number): { name: string; end: number } | WireError => {
    const r = readName(buf, at);
    if (r instanceof WireError) return r;
    if (r.end > end) return err('bad-length', `a name in ${dnsTypeName(type)} RDATA runs past RDLENGTH`);
    return r;
  };
  switch (type) {
    case DnsType.A:
      if (len !== 4) return err('bad-length', `A RDATA of ${len} bytes (must be 4)`);
      return { type, address: [...raw].join('.') };
    case DnsType.AAAA: {
      if (len !== 16) return err('bad-length', `AAAA RDATA of ${len} bytes (must be 16)`);
      return { type, address: formatIpv6(raw) };
    }
    case DnsType.NS:
    case DnsType.CNAME:
    case DnsType.PTR: {
      const r = nameIn(start);
      if (r instanceof WireError) return r;
      if (r.end !== end) return err('bad-length', `${dnsTypeName(type)} RDATA has ${end - r.end} bytes after its name`);
      return { type, target: r.name };
    }
    case DnsType.SOA: {
      const m = nameIn(start);
      if (m instanceof WireError) return m;
      const r = nameIn(m.end);
      if (r instanceof WireError) return r;
      if (end - r.end !== 20) return err('bad-length', `SOA RDATA has ${end - r.end} bytes after its names (must be 20)`);
      const n = (i: number) => buf.readUInt32BE(r.end + 4 * i);
      return { type, soa: { mname: m.name, rname: r.name, serial: n(0), refresh: n(1), retry: n(2), expire: n(3), minimum: n(4) } };
    }
    case DnsType.SRV: {
      if (len < 7) return err('bad-length', `SRV RDATA of ${len} bytes is too short`);
      const t = nameIn(start + 6);
      if (t instanceof WireError) return t;
      if (t.end !== end) return err('bad-length', `SRV RDATA has ${end - t.end} bytes after its target`);
      return { type, srv: { priority: u16(buf, start), weight: u16(buf, start + 2), port: u16(buf, start + 4), target: t.name } };
    }
    case DnsType.TXT: {
      const texts: Buffer[] = [];
      for (let p = start; p < end; ) {
        const l = buf[p];
        if (p + 1 + l > end) return err('bad-length', `TXT string at ${p} runs past RDLENGTH`);
        texts.push(Buffer.from(buf.subarray(p + 1, p + 1 + l)));
        p += 1 + l;
      }
      if (!texts.length) return err('bad-length', 'TXT RDATA holds no string');
      return { type, texts };
    }
    default:
      return { type, raw: Buffer.from(raw) };
  }
}

function formatIpv6(b: Buffer): string {
  const words = Array.from({ length: 8 }, (_, i) => u16(b, 2 * i));
  // RFC 5952: the longest run (>= 2) of zero words becomes "::", the first such run on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

function readRecord(buf: Buffer, off: number, section: string): { rr: DnsRecord; end: number } | WireError {
  const n = readName(buf, off);
  if (n instanceof WireError) return n;
  const p = n.end;
  if (p + 10 > buf.length) return err('truncated', `${section} record at ${off} is cut off in its fixed fields`);
  const type = u16(buf, p);
  const klass = u16(buf, p + 2);
  const ttl = buf.readUInt32BE(p + 4);
  const rdlen = u16(buf, p + 8);
  if (p + 10 + rdlen > buf.length) return err('truncated', `${section} record at ${off}: RDLENGTH ${rdlen} runs past the end`);
  const data = readRdata(buf, type, p + 10, rdlen);
  if (data instanceof WireError) return data;
  return { rr: { name: n.name, type, class: klass, ttl, data }, end: p + 10 + rdlen };
}

/**
 * Parses a DNS message. Bytes after the last record are refused
 * ('bad-length'): tshark flags them too, and a well-formed server sends none.
 */
export function parseDns(buf: Buffer): DnsMessage | WireError {
  if (buf.length < DNS_HEADER_LEN) return err('truncated', `DNS message of ${buf.length} bytes is shorter than the 12-byte header`);
  const f = u16(buf, 2);
  const flags: DnsFlags = {
    qr: !!(f & 0x8000),
    opcode: (f >> 11) & 0xf,
    aa: !!(f & 0x0400),
    tc: !!(f & 0x0200),
    rd: !!(f & 0x0100),
    ra: !!(f & 0x0080),
    z: !!(f & 0x0040),
    ad: !!(f & 0x0020),
    cd: !!(f & 0x0010),
    rcode: f & 0xf,
  };
  const counts = [u16(buf, 4), u16(buf, 6), u16(buf, 8), u16(buf, 10)];
  // Every question takes at least 5 bytes and every record 11: refuse impossible counts before looping.
  if (DNS_HEADER_LEN + counts[0] * 5 + (counts[1] + counts[2] + counts[3]) * 11 > buf.length) {
    return err('truncated', `counts ${counts.join('/')} cannot fit in ${buf.length} bytes`);
  }
  let off = DNS_HEADER_LEN;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const n = readName(buf, off);
    if (n instanceof WireError) return n;
    if (n.end + 4 > buf.length) return err('truncated', `question ${i} is cut off`);
    questions.push({ name: n.name, type: u16(buf, n.end), class: u16(buf, n.end + 2) });
    off = n.end + 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  const names = ['answer', 'authority', 'additional'];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]; i++) {
      const r = readRecord(buf, off, names[s]);
      if (r instanceof WireError) return r;
      sections[s].push(r.rr);
      off = r.end;
    }
  }
  if (off !== buf.length) return err('bad-length', `${buf.length - off} bytes after the last record`);
  return { id: u16(buf, 0), flags, questions, answers: sections[0], authorities: sections[1], additionals: sections[2] };
}

/* ----------------------------------------------------------------- write */

/** A growing output buffer that remembers where each name suffix was written. */
class Writer {
  private buf = Buffer.alloc(512);
  len = 0;
  /** Lower-cased suffix -> offset (only offsets < 0x4000 can be pointed at). */
  private readonly suffixes = new Map<string, number>();

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.len++] = v;
  }
  u16(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`DNS: ${v} does not fit in 16 bits`);
    this.room(2);
    this.buf.writeUInt16BE(v, this.len);
    this.len += 2;
  }
  u32(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`DNS: ${v} does not fit in 32 bits`);
    this.room(4);
    this.buf.writeUInt32BE(v, this.len);
    this.len += 4;
  }
  bytes(b: Buffer): void {
    this.room(b.length);
    b.copy(this.buf, this.len);
    this.len += b.length;
  }
  patch16(at: number, v: number): void {
    this.buf.writeUInt16BE(v, at);
  }
  name(name: string, compress: boolean): void {
    const labels = nameLabels(name);
    if (!labels) throw new RangeError(`DNS: invalid name ${JSON.stringify(name)}`);
    for (let i = 0; i < labels.length; i++) {
      const key = labels
        .slice(i)
        .map((l) => l.toString('latin1').toLowerCase())
        .join('\0');
      const at = this.suffixes.get(key);
      if (compress && at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      // The first occurrence is kept, as miekg/dns (CoreDNS's codec) does.
      if (this.len < 0x4000 && at === undefined) this.suffixes.set(key, this.len);
      this.u8(labels[i].length);
      this.bytes(labels[i]);
    }
    this.u8(0);
  }
  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

function writeRdata(w: Writer, d: DnsRdata, compress: boolean): void {
  if ('raw' in d) return w.bytes(d.raw);
  if ('address' in d) {
    if (d.type === DnsType.A) {
      const o = d.address.split('.').map(Number);
      if (o.length !== 4 || o.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new RangeError(`DNS: bad IPv4 address ${d.address}`);
      return w.bytes(Buffer.from(o));
    }
    return w.bytes(ipv6Bytes(d.address));
  }
  if ('target' in d) return w.name(d.target, compress);
  if ('soa' in d) {
    w.name(d.soa.mname, compress);
    w.name(d.soa.rname, compress);
    for (const v of [d.soa.serial, d.soa.refresh, d.soa.retry, d.soa.expire, d.soa.minimum]) w.u32(v);
    return;
  }
  if ('srv' in d) {
    w.u16(d.srv.priority);
    w.u16(d.srv.weight);
    w.u16(d.srv.port);
    // RFC 2782: the target is not compressed (old resolvers cannot expand it).
    return w.name(d.srv.target, false);
  }
  for (const t of d.texts) {
    if (t.length > 255) throw new RangeError('DNS: a TXT string is longer than 255 bytes');
    w.u8(t.length);
    w.bytes(t);
  }
}

function ipv6Bytes(s: string): Buffer {
  const halves = s.split('::');
  if (halves.length > 2) throw new RangeError(`DNS: bad IPv6 address ${s}`);
  const words = (h: string) => (h ? h.split(':').map((x) => (/^[0-9a-f]{1,4}$/i.test(x) ? parseInt(x, 16) : NaN)) : []);
  const head = words(halves[0]);
  const tail = halves.length === 2 ? words(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 2 ? fill < 1 : fill !== 0) || [...head, ...tail].some(Number.isNaN)) throw new RangeError(`DNS: bad IPv6 address ${s}`);
  const all = [...head, ...Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  const b = Buffer.alloc(16);
  all.forEach((w, i) => b.writeUInt16BE(w, 2 * i));
  return b;
}

export interface SerializeDnsOptions {
  /** Compress names (default true). */
  compress?: boolean;
}

/** Serializes a message; throws RangeError on a Repr that cannot be encoded (a bad name, a count over 65535). */
export function serializeDns(m: DnsMessage, opts?: SerializeDnsOptions): Buffer {
  const compress = opts?.compress !== false;
  const w = new Writer();
  const f = m.flags;
  if (f.opcode < 0 || f.opcode > 15 || f.rcode < 0 || f.rcode > 15) throw new RangeError('DNS: opcode and rcode are 4 bits');
  w.u16(m.id);
  w.u16(
    (f.qr ? 0x8000 : 0) | (f.opcode << 11) | (f.aa ? 0x400 : 0) | (f.tc ? 0x200 : 0) | (f.rd ? 0x100 : 0) | (f.ra ? 0x80 : 0) | (f.z ? 0x40 : 0) | (f.ad ? 0x20 : 0) | (f.cd ? 0x10 : 0) | f.rcode,
  );
  for (const n of [m.questions.length, m.answers.length, m.authorities.length, m.additionals.length]) w.u16(n);
  for (const q of m.questions) {
    w.name(q.name, compress);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const rr of [...m.answers, ...m.authorities, ...m.additionals]) {
    w.name(rr.name, compress);
    w.u16(rr.type);
    w.u16(rr.class);
    w.u32(rr.ttl);
    const lenAt = w.len;
    w.u16(0);
    // RFC 3597 section 4: only the RFC 1035 types' RDATA names may be compressed.
    const typeCompresses = rr.type === DnsType.NS || rr.type === DnsType.CNAME || rr.type === DnsType.PTR || rr.type === DnsType.SOA;
    writeRdata(w, rr.data, compress && typeCompresses);
    w.patch16(lenAt, w.len - lenAt - 2);
  }
  return w.done();
}

/** The reverse-lookup name of an IPv4 address: 10.244.1.5 -> 5.1.244.10.in-addr.arpa. */
export function reverseName(ipv4: string): string {
  return `${ipv4.split('.').reverse().join('.')}.in-addr.arpa`;
}
