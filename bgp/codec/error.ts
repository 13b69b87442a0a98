/**
 * BGP decode errors and NOTIFICATION codes.
 *
 * As in GoBGP (pkg/packet/bgp `MessageError`), a decode error *is* the
 * NOTIFICATION to send: `BgpError { code, subcode, data }` carries exactly the
 * error code, subcode and data field that RFC 4271 §6 prescribes for the
 * fault, so the FSM turns a failed parse into the right NOTIFICATION without
 * a translation table. Parsers return it; they never throw.
 *
 * Like `packet/errors.ts`'s WireError it captures no stack: a malformed
 * message is a value describing input, not a bug in podlab.
 */

/** NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 §5). */
export const ERR_MESSAGE_HEADER = 1;
export const ERR_OPEN = 2;
export const ERR_UPDATE = 3;
export const ERR_HOLD_TIMER_EXPIRED = 4;
export const ERR_FSM = 5;
export const ERR_CEASE = 6;
export const ERR_ROUTE_REFRESH = 7;

/** Message Header Error subcodes (RFC 4271 §6.1). */
export const HDR_CONNECTION_NOT_SYNCHRONIZED = 1;
export const HDR_BAD_MESSAGE_LENGTH = 2;
export const HDR_BAD_MESSAGE_TYPE = 3;

/** OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5). */
export const OPEN_UNSUPPORTED_VERSION = 1;
export const OPEN_BAD_PEER_AS = 2;
export const OPEN_BAD_BGP_IDENTIFIER = 3;
export const OPEN_UNSUPPORTED_OPTIONAL_PARAMETER = 4;
export const OPEN_UNACCEPTABLE_HOLD_TIME = 6;
export const OPEN_UNSUPPORTED_CAPABILITY = 7;

/** UPDATE Message Error subcodes (RFC 4271 §6.3). */
export const UPD_MALFORMED_ATTRIBUTE_LIST = 1;
export const UPD_UNRECOGNIZED_WELL_KNOWN = 2;
export const UPD_MISSING_WELL_KNOWN = 3;
export const UPD_ATTRIBUTE_FLAGS = 4;
export const UPD_ATTRIBUTE_LENGTH = 5;
export const UPD_INVALID_ORIGIN = 6;
export const UPD_INVALID_NEXT_HOP = 8;
export const UPD_OPTIONAL_ATTRIBUTE = 9;
export const UPD_INVALID_NETWORK_FIELD = 10;
export const UPD_MALFORMED_AS_PATH = 11;

/** FSM Error subcodes (RFC 6608). */
export const FSM_UNSPECIFIED = 0;
export const FSM_UNEXPECTED_IN_OPENSENT = 1;
export const FSM_UNEXPECTED_IN_OPENCONFIRM = 2;
export const FSM_UNEXPECTED_IN_ESTABLISHED = 3;

/** Cease subcodes (RFC 4486, RFC 8538, RFC 9384). */
export const CEASE_MAX_PREFIXES = 1;
export const CEASE_ADMIN_SHUTDOWN = 2;
export const CEASE_PEER_DECONFIGURED = 3;
export const CEASE_ADMIN_RESET = 4;
export const CEASE_CONNECTION_REJECTED = 5;
export const CEASE_OTHER_CONFIG_CHANGE = 6;
export const CEASE_CONNECTION_COLLISION = 7;
export const CEASE_OUT_OF_RESOURCES = 8;
export const CEASE_HARD_RESET = 9;
export const CEASE_BFD_DOWN = 10;

/** Names of every error code, and of every subcode RFC 4271 and its updates define. */
const NAMES: Readonly<Record<number, readonly [string, Readonly<Record<number, string>>]>> = {
  [ERR_MESSAGE_HEADER]: [
    'Message Header Error',
    { 1: 'Connection Not Synchronized', 2: 'Bad Message Length', 3: 'Bad Message Type' },
  ],
  [ERR_OPEN]: [
    'OPEN Message Error',
    {
      1: 'Unsupported Version Number',
      2: 'Bad Peer AS',
      3: 'Bad BGP Identifier',
      4: 'Unsupported Optional Parameter',
      5: 'Authentication Failure (deprecated)',
      6: 'Unacceptable Hold Time',
      7: 'Unsupported Capability',
      11: 'Role Mismatch',
    },
  ],
  [ERR_UPDATE]: [
    'UPDATE Message Error',
    {
      1: 'Malformed Attribute List',
      2: 'Unrecognized Well-known Attribute',
      3: 'Missing Well-known Attribute',
      4: 'Attribute Flags Error',
      5: 'Attribute Length Error',
      6: 'Invalid ORIGIN Attribute',
      7: 'AS Routing Loop (deprecated)',
      8: 'Invalid NEXT_HOP Attribute',
      9: 'Optional Attribute Error',
      10: 'Invalid Network Field',
      11: 'Malformed AS_PATH',
    },
  ],
  [ERR_HOLD_TIMER_EXPIRED]: ['Hold Timer Expired', {}],
  [ERR_FSM]: [
    'Finite State Machine Error',
    {
      1: 'Receive Unexpected Message in OpenSent State',
      2: 'Receive Unexpected Message in OpenConfirm State',
      3: 'Receive Unexpected Message in Established State',
    },
  ],
  [ERR_CEASE]: [
    'Cease',
    {
      1: 'Maximum Number of Prefixes Reached',
      2: 'Administrative Shutdown',
      3: 'Peer De-configured',
      4: 'Administrative Reset',
      5: 'Connection Rejected',
      6: 'Other Configuration Change',
      7: 'Connection Collision Resolution',
      8: 'Out of Resources',
      9: 'Hard Reset',
      10: 'BFD Down',
    },
  ],
  [ERR_ROUTE_REFRESH]: ['ROUTE-REFRESH Message Error', { 1: 'Invalid Message Length' }],
};

/** The name of an error code, e.g. `notificationCodeName(3)` = 'UPDATE Message Error'. */
export function notificationCodeName(code: number): string {
  return NAMES[code]?.[0] ?? `Unknown error code ${code}`;
}

/**
 * "code/subcode name", e.g. 'UPDATE Message Error / Invalid ORIGIN Attribute'.
 * Subcode 0 reads "Unspecific" (RFC 4271 §4.5), as Wireshark prints it.
 */
export function notificationName(code: number, subcode: number): string {
  const entry = NAMES[code];
  if (!entry) return `Unknown error code ${code} / subcode ${subcode}`;
  if (subcode === 0) return `${entry[0]} / Unspecific`;
  return `${entry[0]} / ${entry[1][subcode] ?? `Unknown subcode ${subcode}`}`;
}

/**
 * A BGP protocol error: the NOTIFICATION it calls for plus a human message.
 * Returned by every `parse*` in `bgp/codec/` and by the session checks; never thrown.
 */
export class BgpError extends Error {
  override name = 'BgpError';
  /** The data field of the NOTIFICATION (RFC 4271 §6 says what goes there per error). */
  readonly data: Buffer;

  constructor(
    /** NOTIFICATION error code (1..7). */
    readonly code: number,
    /** NOTIFICATION error subcode (0 = unspecific). */
    readonly subcode: number,
    data: Buffer | undefined,
    message: string,
  ) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.data = data ?? Buffer.alloc(0);
  }

  /** 'UPDATE Message Error / Invalid ORIGIN Attribute' and so on. */
  get notificationName(): string {
    return notificationName(this.code, this.subcode);
  }

  /** "3/6 UPDATE Message Error / Invalid ORIGIN Attribute: <message>". */
  override toString(): string {
    return `${this.code}/${this.subcode} ${this.notificationName}: ${this.message}`;
  }
}

/** Type guard for the `Repr | BgpError` union every BGP parser returns. */
export function isBgpError(x: unknown): x is BgpError {
  return x instanceof BgpError;
}

/** A 2-byte big-endian buffer (the data of "Bad Message Length" and "Unsupported Version Number"). */
export function u16Data(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v & 0xffff);
  return b;
}
