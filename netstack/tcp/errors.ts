/**
 * Socket errors as Node's `net` reports them: an Error whose `code` is the
 * errno name (ECONNREFUSED, ETIMEDOUT, ECONNRESET, EHOSTUNREACH, EADDRINUSE,
 * EPIPE...), whose message reads `connect ECONNREFUSED 10.244.2.3:80`, with
 * `syscall`, `address` and `port` set when known.
 */

/** Errno names the TCP layer reports. */
export type TcpErrorCode =
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'ETIMEDOUT'
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'EPIPE'
  | 'EINVAL'
  | 'ECONNABORTED'
  | 'EMSGSIZE';

const TEXT: Record<TcpErrorCode, string> = {
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  EPIPE: 'Broken pipe',
  EINVAL: 'Invalid argument',
  ECONNABORTED: 'Software caused connection abort',
  EMSGSIZE: 'Message too long',
};

/** A socket error (TCP or UDP) carrying its errno name. */
export class TcpError extends Error {
  override name = 'SocketError';
  constructor(
    readonly code: TcpErrorCode,
    readonly syscall: string,
    readonly address?: string,
    readonly port?: number,
    detail?: string,
  ) {
    super(`${syscall} ${code}${address !== undefined ? ` ${address}${port !== undefined ? `:${port}` : ''}` : ''}${detail ? ` (${detail})` : ''}`);
  }

  /** The strerror text, e.g. "Connection refused" (what curl and nc print). */
  get text(): string {
    return TEXT[this.code];
  }
}

/** strerror() for a code. */
export function errnoText(code: TcpErrorCode): string {
  return TEXT[code];
}

/** The same class under a protocol-neutral name, for UDP sockets and apps. */
export { TcpError as SocketError };
