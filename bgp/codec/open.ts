/**
 * OPEN message (RFC 4271 §4.2) with the Capabilities optional parameter
 * (RFC 5492).
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |    Version    |     My Autonomous System      |   Hold Time   :
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * :               |                BGP Identifier                 :
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * :               | Opt Parm Len  |  Optional Parameters ...      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Optional parameter:  Parm. Type (1) | Parm. Length (1) | Parm. Value
 * Capability (type 2): Capability Code (1) | Capability Length (1) | Value
 *   1  Multiprotocol (RFC 4760 §8):   AFI (2) | Reserved (1) | SAFI (1)
 *   2  Route Refresh (RFC 2918):      empty
 *   64 Graceful Restart (RFC 4724):   Flags (4 bits) | Restart Time (12 bits) |
 *                                     { AFI (2) | SAFI (1) | AF Flags (1) }*
 *   65 4-octet AS (RFC 6793):         AS number (4)
 *   anything else: kept as raw bytes (BIRD sends 70 enhanced route refresh
 *   and 71 long-lived GR; others send 73 hostname, 6 extended message ...)
 * ```
 *
 * Errors (RFC 4271 §6.2): version ≠ 4 → 2/1 with our version (2 octets) as
 * data; hold time 1 or 2 → 2/6; BGP Identifier 0 → 2/3 (RFC 6286 made any
 * other value valid); optional parameter other than Capabilities → 2/4; a
 * malformed parameter or capability (lengths that overrun, a known capability
 * of the wrong size) → 2/0 "Unspecific", as §6.2 says for recognized but
 * malformed parameters. Bad Peer AS (2/2) and Unsupported Capability (2/7)
 * depend on configuration and are checked by `bgp/session.ts`.
 *
 * The serializer writes all capabilities into one optional parameter, as BIRD
 * and GoBGP do; a parsed OPEN that split them into several parameters
 * re-serializes into one.
 */
import { intToIpv4, ipv4ToInt, isValidIpv4 } from '../../packet/addr.ts';
import {
  BGP_HEADER_LEN,
  BGP_VERSION,
  CAP_FOUR_OCTET_AS,
  CAP_GRACEFUL_RESTART,
  CAP_MULTIPROTOCOL,
  CAP_ROUTE_REFRESH,
  MSG_OPEN,
  OPT_PARAM_CAPABILITIES,
} from './constants.ts';
import {
  BgpError,
  ERR_MESSAGE_HEADER,
  ERR_OPEN,
  HDR_BAD_MESSAGE_LENGTH,
  OPEN_BAD_BGP_IDENTIFIER,
  OPEN_UNACCEPTABLE_HOLD_TIME,
  OPEN_UNSUPPORTED_OPTIONAL_PARAMETER,
  OPEN_UNSUPPORTED_VERSION,
  u16Data,
} from './error.ts';
import { allocMessage } from './header.ts';

/** Body offsets (after the 19-byte header). */
const VERSION = 0;
const MY_AS = 1;
const HOLD_TIME = 3;
const BGP_ID = 5;
const OPT_LEN = 9;
const OPT_PARAMS = 10;

/** One address family in a Graceful Restart capability. */
export interface GracefulRestartFamily {
  afi: number;
  safi: number;
  /** AF flags octet; 0x80 = forwarding state preserved. */
  flags: number;
}

/** A capability advertised in an OPEN (RFC 5492). Unknown codes are kept as raw bytes. */
export type Capability =
  | { kind: 'multiprotocol'; afi: number; safi: number }
  | { kind: 'route-refresh' }
  | { kind: 'four-octet-as'; asn: number }
  | {
      kind: 'graceful-restart';
      /** The 4 flag bits: 0x8 = Restart State (R), 0x4 = Notification (N, RFC 8538). */
      flags: number;
      /** Restart Time in seconds (12 bits). */
      restartTime: number;
      families: GracefulRestartFamily[];
    }
  | { kind: 'unknown'; code: number; value: Buffer };

/** A decoded OPEN message (the version is always 4: anything else is a parse error). */
export interface OpenRepr {
  /** The 2-octet My Autonomous System field: AS_TRANS (23456) when the real ASN needs 4 octets. */
  myAs: number;
  /** Proposed hold time in seconds: 0 or >= 3. */
  holdTime: number;
  /** BGP Identifier, dotted quad. */
  bgpId: string;
  capabilities: Capability[];
}

/** Capability code of a Capability value. */
export function capabilityCode(c: Capability): number {
  switch (c.kind) {
    case 'multiprotocol':
      return CAP_MULTIPROTOCOL;
    case 'route-refresh':
      return CAP_ROUTE_REFRESH;
    case 'four-octet-as':
      return CAP_FOUR_OCTET_AS;
    case 'graceful-restart':
      return CAP_GRACEFUL_RESTART;
    case 'unknown':
      return c.code;
  }
}

function malformed(msg: string): BgpError {
  return new BgpError(ERR_OPEN, 0, undefined, msg);
}

/** Decodes one capability value; `undefined` means "wrong length for a known code". */
function decodeCapability(code: number, v: Buffer): Capability | undefined {
  switch (code) {
    case CAP_MULTIPROTOCOL:
      return v.length === 4 ? { kind: 'multiprotocol', afi: v.readUInt16BE(0), safi: v[3] } : undefined;
    case CAP_ROUTE_REFRESH:
      return v.length === 0 ? { kind: 'route-refresh' } : undefined;
    case CAP_FOUR_OCTET_AS:
      return v.length === 4 ? { kind: 'four-octet-as', asn: v.readUInt32BE(0) } : undefined;
    case CAP_GRACEFUL_RESTART: {
      if (v.length < 2 || (v.length - 2) % 4 !== 0) return undefined;
      const w = v.readUInt16BE(0);
      const families: GracefulRestartFamily[] = [];
      for (let o = 2; o < v.length; o += 4) families.push({ afi: v.readUInt16BE(o), safi: v[o + 2], flags: v[o + 3] });
      return { kind: 'graceful-restart', flags: w >> 12, restartTime: w & 0x0fff, families };
    }
    default:
      return { kind: 'unknown', code, value: Buffer.from(v) };
  }
}

/** Parses the capabilities inside one Capabilities optional parameter value. */
function parseCapabilities(v: Buffer, out: Capability[]): BgpError | undefined {
  let off = 0;
  while (off < v.length) {
    if (off + 2 > v.length) return malformed(`capability header at offset ${off} is truncated`);
    const code = v[off];
    const len = v[off + 1];
    if (off + 2 + len > v.length) return malformed(`capability ${code} of length ${len} overruns its parameter`);
    const cap = decodeCapability(code, v.subarray(off + 2, off + 2 + len));
    if (!cap) return malformed(`capability ${code} has invalid length ${len}`);
    out.push(cap);
    off += 2 + len;
  }
  return undefined;
}

/**
 * Parses an OPEN message body (the bytes after the 19-byte header).
 * Returns the Repr or the BgpError whose NOTIFICATION RFC 4271 §6.2 prescribes.
 */
export function parseOpenBody(body: Buffer): OpenRepr | BgpError {
  if (body.length < OPT_PARAMS) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(body.length + BGP_HEADER_LEN), `OPEN of ${body.length + BGP_HEADER_LEN} bytes (minimum 29)`);
  }
  const version = body[VERSION];
  if (version !== BGP_VERSION) {
    return new BgpError(ERR_OPEN, OPEN_UNSUPPORTED_VERSION, u16Data(BGP_VERSION), `BGP version ${version}, only 4 is supported`);
  }
  const myAs = body.readUInt16BE(MY_AS);
  const holdTime = body.readUInt16BE(HOLD_TIME);
  const id = body.readUInt32BE(BGP_ID);
  const optLen = body[OPT_LEN];
  if (OPT_PARAMS + optLen !== body.length) {
    return malformed(`optional parameters length ${optLen} disagrees with the message (${body.length - OPT_PARAMS} bytes follow)`);
  }
  const capabilities: Capability[] = [];
  let off = OPT_PARAMS;
  while (off < body.length) {
    if (off + 2 > body.length) return malformed(`optional parameter header at offset ${off} is truncated`);
    const type = body[off];
    const len = body[off + 1];
    if (off + 2 + len > body.length) return malformed(`optional parameter ${type} of length ${len} overruns the message`);
    if (type !== OPT_PARAM_CAPABILITIES) {
      return new BgpError(ERR_OPEN, OPEN_UNSUPPORTED_OPTIONAL_PARAMETER, undefined, `optional parameter type ${type} (only 2, Capabilities, is supported)`);
    }
    const err = parseCapabilities(body.subarray(off + 2, off + 2 + len), capabilities);
    if (err) return err;
    off += 2 + len;
  }
  // Checked after the structure so that a garbled message reports the framing fault first.
  if (holdTime === 1 || holdTime === 2) {
    return new BgpError(ERR_OPEN, OPEN_UNACCEPTABLE_HOLD_TIME, undefined, `hold time ${holdTime} s (must be 0 or at least 3)`);
  }
  if (id === 0) {
    return new BgpError(ERR_OPEN, OPEN_BAD_BGP_IDENTIFIER, undefined, 'BGP Identifier 0.0.0.0');
  }
  return { myAs, holdTime, bgpId: intToIpv4(id), capabilities };
}

/** Encoded size of one capability (code + length + value). */
function capabilityLen(c: Capability): number {
  switch (c.kind) {
    case 'multiprotocol':
    case 'four-octet-as':
      return 6;
    case 'route-refresh':
      return 2;
    case 'graceful-restart':
      return 4 + 4 * c.families.length;
    case 'unknown':
      return 2 + c.value.length;
  }
}

function writeCapability(buf: Buffer, off: number, c: Capability): number {
  const len = capabilityLen(c) - 2;
  if (len > 255) throw new RangeError(`capability ${capabilityCode(c)} value of ${len} bytes exceeds 255`);
  buf[off] = capabilityCode(c);
  buf[off + 1] = len;
  const v = off + 2;
  switch (c.kind) {
    case 'multiprotocol':
      buf.writeUInt16BE(c.afi, v);
      buf[v + 2] = 0;
      buf.writeUInt8(c.safi, v + 3);
      break;
    case 'route-refresh':
      break;
    case 'four-octet-as':
      buf.writeUInt32BE(c.asn, v);
      break;
    case 'graceful-restart': {
      if (c.flags < 0 || c.flags > 0xf || c.restartTime < 0 || c.restartTime > 0xfff) throw new RangeError('graceful restart flags/time out of range');
      buf.writeUInt16BE((c.flags << 12) | c.restartTime, v);
      c.families.forEach((f, i) => {
        buf.writeUInt16BE(f.afi, v + 2 + 4 * i);
        buf.writeUInt8(f.safi, v + 4 + 4 * i);
        buf.writeUInt8(f.flags, v + 5 + 4 * i);
      });
      break;
    }
    case 'unknown':
      buf.writeUInt8(c.code, off);
      c.value.copy(buf, v);
      break;
  }
  return off + 2 + len;
}

/** Serializes a whole OPEN message. Throws RangeError on values that do not fit their fields. */
export function serializeOpen(repr: OpenRepr): Buffer {
  if (!isValidIpv4(repr.bgpId)) throw new RangeError(`invalid BGP identifier ${JSON.stringify(repr.bgpId)}`);
  const capsLen = repr.capabilities.reduce((n, c) => n + capabilityLen(c), 0);
  if (capsLen > 253) throw new RangeError(`capabilities of ${capsLen} bytes do not fit one optional parameter`);
  const optLen = repr.capabilities.length ? 2 + capsLen : 0;
  const buf = allocMessage(MSG_OPEN, OPT_PARAMS + optLen);
  const b = BGP_HEADER_LEN;
  buf[b + VERSION] = BGP_VERSION;
  buf.writeUInt16BE(repr.myAs, b + MY_AS);
  buf.writeUInt16BE(repr.holdTime, b + HOLD_TIME);
  buf.writeUInt32BE(ipv4ToInt(repr.bgpId), b + BGP_ID);
  buf[b + OPT_LEN] = optLen;
  if (optLen) {
    buf[b + OPT_PARAMS] = OPT_PARAM_CAPABILITIES;
    buf[b + OPT_PARAMS + 1] = capsLen;
    let off = b + OPT_PARAMS + 2;
    for (const c of repr.capabilities) off = writeCapability(buf, off, c);
  }
  return buf;
}

/** The 4-octet AS capability's ASN if present, else the 2-octet My AS field (RFC 6793 §4.1). */
export function openAsn(open: OpenRepr): number {
  for (const c of open.capabilities) if (c.kind === 'four-octet-as') return c.asn;
  return open.myAs;
}

/** The first capability of a kind, typed. */
export function findCapability<K extends Capability['kind']>(open: OpenRepr, kind: K): Extract<Capability, { kind: K }> | undefined {
  return open.capabilities.find((c): c is Extract<Capability, { kind: K }> => c.kind === kind);
}
