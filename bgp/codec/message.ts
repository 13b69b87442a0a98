/**
 * NOTIFICATION (RFC 4271 §4.5), KEEPALIVE (§4.4) and ROUTE-REFRESH
 * (RFC 2918 §3) bodies, and the whole-message `BgpMessage` union with its
 * dispatching `parseBgpMessage` / `serializeBgpMessage`.
 *
 * ```text
 * NOTIFICATION body:                       ROUTE-REFRESH body:
 * +---------------+---------------+----    +-------------------------------+---------------+---------------+
 * | Error code    | Error subcode | Data   |              AFI              |   Reserved    |     SAFI      |
 * +---------------+---------------+----    +-------------------------------+---------------+---------------+
 * KEEPALIVE: the 19-byte header alone.     (Reserved is RFC 7313's Message Subtype; 0 = plain refresh)
 * ```
 *
 * Length faults are caught by the header check (a KEEPALIVE must be exactly
 * 19 bytes, a ROUTE-REFRESH 23, a NOTIFICATION at least 21: 1/2).
 */
import { BGP_HEADER_LEN, MSG_KEEPALIVE, MSG_NOTIFICATION, MSG_OPEN, MSG_ROUTE_REFRESH, MSG_UPDATE } from './constants.ts';
import { BgpError, ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, isBgpError, notificationName, u16Data } from './error.ts';
import { allocMessage, parseHeader } from './header.ts';
import type { AttrCodecOptions } from './attributes.ts';
import { type OpenRepr, parseOpenBody, serializeOpen } from './open.ts';
import { type UpdateRepr, parseUpdateBody, serializeUpdate } from './update.ts';

/** A decoded NOTIFICATION. */
export interface NotificationRepr {
  code: number;
  subcode: number;
  data: Buffer;
}

/** A decoded ROUTE-REFRESH. */
export interface RouteRefreshRepr {
  afi: number;
  safi: number;
  /** The reserved octet (RFC 7313 Message Subtype); 0 for a plain RFC 2918 refresh. */
  subtype: number;
}

/** Any BGP message, discriminated by `type`. */
export type BgpMessage =
  | ({ type: 'open' } & OpenRepr)
  | ({ type: 'update' } & UpdateRepr)
  | ({ type: 'notification' } & NotificationRepr)
  | { type: 'keepalive' }
  | ({ type: 'route-refresh' } & RouteRefreshRepr);

/** The kinds of `BgpMessage`. */
export type BgpMessageType = BgpMessage['type'];

/** Parses a NOTIFICATION body. */
export function parseNotificationBody(body: Buffer): NotificationRepr | BgpError {
  if (body.length < 2) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(body.length + BGP_HEADER_LEN), `NOTIFICATION of ${body.length + BGP_HEADER_LEN} bytes (minimum 21)`);
  }
  return { code: body[0], subcode: body[1], data: Buffer.from(body.subarray(2)) };
}

/** Parses a ROUTE-REFRESH body (exactly 4 bytes). */
export function parseRouteRefreshBody(body: Buffer): RouteRefreshRepr | BgpError {
  if (body.length !== 4) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(body.length + BGP_HEADER_LEN), `ROUTE-REFRESH of ${body.length + BGP_HEADER_LEN} bytes (must be 23)`);
  }
  return { afi: body.readUInt16BE(0), subtype: body[2], safi: body[3] };
}

/** Serializes a NOTIFICATION. Throws RangeError if the data makes it exceed 4096 bytes. */
export function serializeNotification(repr: NotificationRepr): Buffer {
  const buf = allocMessage(MSG_NOTIFICATION, 2 + repr.data.length);
  buf.writeUInt8(repr.code, BGP_HEADER_LEN);
  buf.writeUInt8(repr.subcode, BGP_HEADER_LEN + 1);
  repr.data.copy(buf, BGP_HEADER_LEN + 2);
  return buf;
}

/** Serializes a KEEPALIVE (19 bytes). */
export function serializeKeepalive(): Buffer {
  return allocMessage(MSG_KEEPALIVE, 0);
}

/** Serializes a ROUTE-REFRESH. */
export function serializeRouteRefresh(repr: RouteRefreshRepr): Buffer {
  const buf = allocMessage(MSG_ROUTE_REFRESH, 4);
  buf.writeUInt16BE(repr.afi, BGP_HEADER_LEN);
  buf.writeUInt8(repr.subtype, BGP_HEADER_LEN + 2);
  buf.writeUInt8(repr.safi, BGP_HEADER_LEN + 3);
  return buf;
}

/**
 * Parses the body of a message whose header (type) was already checked.
 * `opts.as4` selects the AS_PATH width of UPDATEs (default true).
 */
export function parseBody(type: number, body: Buffer, opts: AttrCodecOptions = {}): BgpMessage | BgpError {
  switch (type) {
    case MSG_OPEN: {
      const r = parseOpenBody(body);
      return isBgpError(r) ? r : { type: 'open', ...r };
    }
    case MSG_UPDATE: {
      const r = parseUpdateBody(body, opts);
      return isBgpError(r) ? r : { type: 'update', ...r };
    }
    case MSG_NOTIFICATION: {
      const r = parseNotificationBody(body);
      return isBgpError(r) ? r : { type: 'notification', ...r };
    }
    case MSG_KEEPALIVE:
      return body.length === 0 ? { type: 'keepalive' } : new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(body.length + BGP_HEADER_LEN), 'KEEPALIVE with a body');
    case MSG_ROUTE_REFRESH: {
      const r = parseRouteRefreshBody(body);
      return isBgpError(r) ? r : { type: 'route-refresh', ...r };
    }
    default:
      return new BgpError(ERR_MESSAGE_HEADER, 3, Buffer.from([type & 0xff]), `unknown message type ${type}`);
  }
}

/**
 * Parses one complete message (header included). `buf` must hold exactly
 * the message (as the framer delivers it); a length field that disagrees
 * with the buffer is 1/2 Bad Message Length.
 */
export function parseBgpMessage(buf: Buffer, opts: AttrCodecOptions = {}): BgpMessage | BgpError {
  const h = parseHeader(buf);
  if (isBgpError(h)) return h;
  if (h.length !== buf.length) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(h.length), `length field ${h.length} but ${buf.length} bytes given`);
  }
  return parseBody(h.type, buf.subarray(BGP_HEADER_LEN), opts);
}

/** Serializes any message. Throws RangeError on unencodable values. */
export function serializeBgpMessage(msg: BgpMessage, opts: AttrCodecOptions = {}): Buffer {
  switch (msg.type) {
    case 'open':
      return serializeOpen(msg);
    case 'update':
      return serializeUpdate(msg, opts);
    case 'notification':
      return serializeNotification(msg);
    case 'keepalive':
      return serializeKeepalive();
    case 'route-refresh':
      return serializeRouteRefresh(msg);
  }
}

/** The NOTIFICATION a BgpError calls for. */
export function notificationFor(err: BgpError): NotificationRepr {
  return { code: err.code, subcode: err.subcode, data: err.data };
}

/** One-line description for logs: 'NOTIFICATION 6/2 Cease / Administrative Shutdown'. */
export function describeMessage(msg: BgpMessage): string {
  switch (msg.type) {
    case 'open':
      return `OPEN as ${msg.myAs} hold ${msg.holdTime} id ${msg.bgpId} caps [${msg.capabilities.map((c) => (c.kind === 'unknown' ? c.code : c.kind)).join(',')}]`;
    case 'update':
      return `UPDATE withdrawn ${msg.withdrawn.length} nlri ${msg.nlri.length}${msg.nlri.length ? ` via ${msg.attributes.nextHop}` : ''}`;
    case 'notification':
      return `NOTIFICATION ${msg.code}/${msg.subcode} ${notificationName(msg.code, msg.subcode)}`;
    case 'keepalive':
      return 'KEEPALIVE';
    case 'route-refresh':
      return `ROUTE-REFRESH afi ${msg.afi} safi ${msg.safi}`;
  }
}
