/**
 * BGP message header (RFC 4271 §4.1).
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                                                               |
 * +                                                               +
 * |                                                               |
 * +                           Marker (16 x 0xff)                  +
 * |                                                               |
 * +                                                               +
 * |                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |          Length               |      Type     |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * Errors (RFC 4271 §6.1): marker not all ones → 1/1 Connection Not
 * Synchronized; length < 19, > 4096 or too small/large for the type → 1/2 Bad
 * Message Length with the length field as data; unknown type → 1/3 Bad
 * Message Type with the type octet as data.
 */
import {
  BGP_HEADER_LEN,
  BGP_MARKER_LEN,
  BGP_MAX_MESSAGE_LEN,
  MESSAGE_TYPE_NAMES,
  MIN_MESSAGE_LEN,
  MSG_KEEPALIVE,
  MSG_ROUTE_REFRESH,
} from './constants.ts';
import {
  BgpError,
  ERR_MESSAGE_HEADER,
  HDR_BAD_MESSAGE_LENGTH,
  HDR_BAD_MESSAGE_TYPE,
  HDR_CONNECTION_NOT_SYNCHRONIZED,
  u16Data,
} from './error.ts';

const LENGTH = 16;
const TYPE = 18;

/** A decoded message header. */
export interface BgpHeader {
  /** Total message length, header included (19..4096). */
  length: number;
  /** Message type code (1..5). */
  type: number;
}

/**
 * Checks the 19-byte header at `buf[off]` (the caller guarantees 19 bytes are
 * there). Validates marker, length range, type, and the per-type length
 * bounds (a KEEPALIVE is exactly 19 bytes, a ROUTE-REFRESH exactly 23).
 */
export function parseHeaderAt(buf: Buffer, off: number): BgpHeader | BgpError {
  for (let i = 0; i < BGP_MARKER_LEN; i++) {
    if (buf[off + i] !== 0xff) {
      return new BgpError(ERR_MESSAGE_HEADER, HDR_CONNECTION_NOT_SYNCHRONIZED, undefined, `marker byte ${i} is 0x${buf[off + i].toString(16).padStart(2, '0')}, not 0xff`);
    }
  }
  const length = buf.readUInt16BE(off + LENGTH);
  const type = buf[off + TYPE];
  if (length < BGP_HEADER_LEN || length > BGP_MAX_MESSAGE_LEN) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(length), `message length ${length} is outside ${BGP_HEADER_LEN}..${BGP_MAX_MESSAGE_LEN}`);
  }
  const min = MIN_MESSAGE_LEN[type];
  if (min === undefined) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_TYPE, Buffer.from([type]), `unknown message type ${type}`);
  }
  const exact = type === MSG_KEEPALIVE || type === MSG_ROUTE_REFRESH;
  if (length < min || (exact && length !== min)) {
    return new BgpError(
      ERR_MESSAGE_HEADER,
      HDR_BAD_MESSAGE_LENGTH,
      u16Data(length),
      `${MESSAGE_TYPE_NAMES[type]} of ${length} bytes (${exact ? 'must be' : 'minimum'} ${min})`,
    );
  }
  return { length, type };
}

/** Parses a header at the start of `buf`; a buffer shorter than 19 bytes is 1/2 Bad Message Length. */
export function parseHeader(buf: Buffer): BgpHeader | BgpError {
  if (buf.length < BGP_HEADER_LEN) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(buf.length), `${buf.length} bytes is shorter than the 19-byte header`);
  }
  return parseHeaderAt(buf, 0);
}

/**
 * Allocates a message of `bodyLen` body bytes with its header written.
 * Throws RangeError if the message would exceed 4096 bytes.
 */
export function allocMessage(type: number, bodyLen: number): Buffer {
  const length = BGP_HEADER_LEN + bodyLen;
  if (length > BGP_MAX_MESSAGE_LEN) {
    throw new RangeError(`${MESSAGE_TYPE_NAMES[type] ?? `type ${type}`} message of ${length} bytes exceeds ${BGP_MAX_MESSAGE_LEN}`);
  }
  const buf = Buffer.alloc(length);
  buf.fill(0xff, 0, BGP_MARKER_LEN);
  buf.writeUInt16BE(length, LENGTH);
  buf[TYPE] = type;
  return buf;
}
