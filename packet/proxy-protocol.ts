/**
 * The PROXY protocol, version 2 (HAProxy's proxy-protocol.txt §2.2): the
 * binary header a load balancer writes at the start of a TCP stream it hands
 * on, so the receiver learns the original client and destination.
 *
 * ```text
 *  0                   1                   2                   3
 * +-------------------------------------------------------------+
 * | signature: 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A  (12 bytes)   |
 * +---------------+---------------+-------------------------------+
 * | ver 2 | cmd   | fam   | proto |      length (rest, BE)        |
 * +---------------+---------------+-------------------------------+
 * | AF_INET: src addr (4) | dst addr (4) | src port (2) | dst port (2)
 * | then TLVs: type (1) | length (2, BE) | value ...                |
 * +----------------------------------------------------------------+
 * ```
 *
 * podlab's lab router (router/) writes it on the connection it opens to the
 * chosen next-hop node, whose agent reads it back to carry the client's
 * connection in addressed to the LB IP from the client's own address.
 * Only what that needs is decoded: commands LOCAL and PROXY, the UNSPEC and
 * INET (IPv4) families over STREAM or DGRAM; TLVs are kept raw. IPv6 and
 * UNIX addresses are a typed `unsupported` error.
 */
import { WireError } from './errors.ts';
import { isValidIpv4 } from './addr.ts';

/** The 12-byte v2 signature. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Signature, version/command, family/protocol and length. */
export const PROXY_V2_FIXED_LEN = 16;
/** The IPv4 address block: two addresses, two ports. */
const INET_LEN = 12;
/** What a receiver accepts before giving up on a header (the spec's largest UNIX block is 216 bytes; TLVs add more). */
export const PROXY_V2_MAX_LEN = 1024;

const CMD = { local: 0x0, proxy: 0x1 } as const;
const TRANSPORT = { unspec: 0x0, stream: 0x1, dgram: 0x2 } as const;

export interface ProxyEndpoint {
  ip: string;
  port: number;
}

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/** A decoded (or to-be-written) v2 header. */
export interface ProxyV2Repr {
  /** `local`: the connection is the proxy's own (health checks); `proxy`: on behalf of `src`. */
  command: 'local' | 'proxy';
  /** `unspec` carries no addresses (LOCAL, or a family the sender cannot express). */
  family: 'unspec' | 'inet';
  transport: 'unspec' | 'stream' | 'dgram';
  src?: ProxyEndpoint;
  dst?: ProxyEndpoint;
  tlvs: ProxyTlv[];
}

/** A parse result: the header and how many bytes of the input it took (the stream continues after them). */
export interface ProxyV2Parsed extends ProxyV2Repr {
  headerLength: number;
}

const ip4 = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

/**
 * Parses a v2 header at the start of `buf`. `truncated` means more bytes may
 * complete it (a stream reader waits for them); every other error is final.
 */
export function parseProxyV2(buf: Buffer): ProxyV2Parsed | WireError {
  const sigLen = Math.min(buf.length, PROXY_V2_SIGNATURE.length);
  if (!buf.subarray(0, sigLen).equals(PROXY_V2_SIGNATURE.subarray(0, sigLen))) return new WireError('proxy', 'bad-value', 'not a PROXY protocol v2 signature');
  if (buf.length < PROXY_V2_FIXED_LEN) return new WireError('proxy', 'truncated', `PROXY v2 header of ${buf.length} bytes is shorter than its 16 fixed bytes`);
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return new WireError('proxy', 'bad-version', `PROXY protocol version ${verCmd >> 4}, expected 2`);
  const cmd = verCmd & 0x0f;
  if (cmd !== CMD.local && cmd !== CMD.proxy) return new WireError('proxy', 'bad-value', `PROXY v2 command 0x${cmd.toString(16)}`);
  const fam = buf[13] >> 4;
  const proto = buf[13] & 0x0f;
  const length = buf.readUInt16BE(14);
  if (PROXY_V2_FIXED_LEN + length > PROXY_V2_MAX_LEN) return new WireError('proxy', 'bad-length', `PROXY v2 header of ${PROXY_V2_FIXED_LEN + length} bytes is longer than the ${PROXY_V2_MAX_LEN} accepted`);
  if (buf.length < PROXY_V2_FIXED_LEN + length) return new WireError('proxy', 'truncated', `PROXY v2 header announces ${length} address bytes, ${buf.length - PROXY_V2_FIXED_LEN} present`);
  const transport = proto === TRANSPORT.unspec ? 'unspec' : proto === TRANSPORT.stream ? 'stream' : proto === TRANSPORT.dgram ? 'dgram' : undefined;
  if (!transport) return new WireError('proxy', 'bad-value', `PROXY v2 transport protocol ${proto}`);
  const out: ProxyV2Parsed = { command: cmd === CMD.local ? 'local' : 'proxy', family: 'unspec', transport, tlvs: [], headerLength: PROXY_V2_FIXED_LEN + length };
  let off = PROXY_V2_FIXED_LEN;
  const end = PROXY_V2_FIXED_LEN + length;
  if (fam === 1) {
    if (length < INET_LEN) return new WireError('proxy', 'bad-length', `PROXY v2 AF_INET block of ${length} bytes, need ${INET_LEN}`);
    out.family = 'inet';
    out.src = { ip: ip4(buf, off), port: buf.readUInt16BE(off + 8) };
    out.dst = { ip: ip4(buf, off + 4), port: buf.readUInt16BE(off + 10) };
    off += INET_LEN;
  } else if (fam === 2 || fam === 3) {
    return new WireError('proxy', 'unsupported', `PROXY v2 address family ${fam === 2 ? 'AF_INET6' : 'AF_UNIX'}`);
  } else if (fam !== 0) {
    return new WireError('proxy', 'bad-value', `PROXY v2 address family ${fam}`);
  }
  // A sender that knows no family may still send a LOCAL or UNSPEC block: its bytes are skipped, as the spec says.
  if (fam === 0) off = end;
  while (off < end) {
    if (end - off < 3) return new WireError('proxy', 'bad-length', `PROXY v2 TLV header cut at ${end - off} bytes`);
    const type = buf[off];
    const len = buf.readUInt16BE(off + 1);
    if (off + 3 + len > end) return new WireError('proxy', 'bad-length', `PROXY v2 TLV 0x${type.toString(16)} of ${len} bytes runs past the header`);
    out.tlvs.push({ type, value: buf.subarray(off + 3, off + 3 + len) });
    off += 3 + len;
  }
  return out;
}

/** Serializes a v2 header. Throws RangeError for a Repr that cannot be encoded (bad address, port, TLV). */
export function serializeProxyV2(r: ProxyV2Repr): Buffer {
  const inet = r.family === 'inet';
  if (inet && (!r.src || !r.dst)) throw new RangeError('PROXY v2 AF_INET header needs src and dst');
  for (const e of inet ? [r.src!, r.dst!] : []) {
    if (!isValidIpv4(e.ip)) throw new RangeError(`invalid IPv4 address ${e.ip}`);
    if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff) throw new RangeError(`invalid port ${e.port}`);
  }
  const tlvLen = r.tlvs.reduce((n, t) => n + 3 + t.value.length, 0);
  const length = (inet ? INET_LEN : 0) + tlvLen;
  if (PROXY_V2_FIXED_LEN + length > PROXY_V2_MAX_LEN) throw new RangeError(`PROXY v2 header of ${PROXY_V2_FIXED_LEN + length} bytes is too long`);
  const buf = Buffer.alloc(PROXY_V2_FIXED_LEN + length);
  PROXY_V2_SIGNATURE.copy(buf, 0);
  buf[12] = 0x20 | CMD[r.command];
  buf[13] = ((inet ? 1 : 0) << 4) | TRANSPORT[r.transport];
  buf.writeUInt16BE(length, 14);
  let off = PROXY_V2_FIXED_LEN;
  if (inet) {
    for (const [i, e] of [r.src!, r.dst!].entries()) {
      const o = e.ip.split('.').map(Number);
      for (let k = 0; k < 4; k++) buf[off + i * 4 + k] = o[k];
    }
    buf.writeUInt16BE(r.src!.port, off + 8);
    buf.writeUInt16BE(r.dst!.port, off + 10);
    off += INET_LEN;
  }
  for (const t of r.tlvs) {
    if (!Number.isInteger(t.type) || t.type < 0 || t.type > 0xff) throw new RangeError(`invalid TLV type ${t.type}`);
    buf[off] = t.type;
    buf.writeUInt16BE(t.value.length, off + 1);
    t.value.copy(buf, off + 3);
    off += 3 + t.value.length;
  }
  return buf;
}
