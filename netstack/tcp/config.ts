/**
 * TCP tunables, named after the Linux sysctls they stand for where there is
 * one. The defaults are the lab's: Linux's algorithms with shorter clocks, so
 * a dead peer is noticed in seconds rather than the quarter of an hour
 * Linux's tcp_retries2 = 15 takes.
 */
export interface TcpConfig {
  /** Receive buffer, bytes: the most the receive window opens to (tcp_rmem). */
  rcvBuf: number;
  /**
   * Send buffer, bytes: `write()` returns false beyond it (tcp_wmem's default). It grows, as
   * Linux's tcp_sndbuf_expand grows sk_sndbuf, to two windows the connection can use, so a
   * window's worth of data is still queued when the first half drains: see `sndBufMax`.
   */
  sndBuf: number;
  /** Most the send buffer grows to (tcp_wmem's max; Linux 4 MiB). */
  sndBufMax: number;
  /** RTO before any RTT sample (RFC 6298 §2.1: 1 s). */
  initialRtoMs: number;
  /** Floor of the RTO (Linux TCP_RTO_MIN: 200 ms). */
  minRtoMs: number;
  /** Ceiling of the RTO (Linux TCP_RTO_MAX: 120 s). */
  maxRtoMs: number;
  /** SYN retransmissions before connect() fails with ETIMEDOUT (tcp_syn_retries; Linux 6). */
  synRetries: number;
  /** SYN-ACK retransmissions before a half-open connection is dropped (tcp_synack_retries; Linux 5). */
  synAckRetries: number;
  /** Retransmissions of one segment before the connection fails (tcp_retries2). */
  maxRetransmits: number;
  /** Time from the first retransmission to failure, whichever of the two bounds comes first (TCP_USER_TIMEOUT). */
  userTimeoutMs: number;
  /** TIME-WAIT duration, 2*MSL (Linux: 60 s, fixed). */
  timeWaitMs: number;
  /** Delayed-ACK timeout (Linux: 40 ms minimum, 200 ms maximum). */
  delayedAckMs: number;
  /** Initial congestion window in segments (RFC 6928 / Linux: 10). */
  initialCwnd: number;
  /** Longest interval between zero-window probes. */
  maxPersistMs: number;
  /** Default listen backlog (somaxconn; Linux 4096, we use 128 as older kernels). */
  backlog: number;
}

/** The lab's defaults: connect fails after ~15 s (SYN at 0, 1, 3, 7 s, given up at 15 s), a vanished peer after ~15 s. */
export const DEFAULT_TCP_CONFIG: Readonly<TcpConfig> = Object.freeze({
  rcvBuf: 256 * 1024,
  sndBuf: 256 * 1024,
  sndBufMax: 4 * 1024 * 1024,
  initialRtoMs: 1000,
  minRtoMs: 200,
  maxRtoMs: 60_000,
  synRetries: 3,
  synAckRetries: 3,
  maxRetransmits: 15,
  userTimeoutMs: 15_000,
  timeWaitMs: 2000,
  delayedAckMs: 40,
  initialCwnd: 10,
  maxPersistMs: 10_000,
  backlog: 128,
});
