/**
 * A UDP socket for applications in a pod, shaped like Node's `dgram.Socket`
 * (a subset) over the pod stack's `bindUdp`/`sendUdp`: `bind(port)`,
 * `send(data, port, host)`, 'message' (data, rinfo), 'error', 'close'.
 * Binding a taken port throws a typed EADDRINUSE at once, so two containers
 * of one pod asking for the same UDP port fail clearly.
 */
import { EventEmitter } from 'node:events';
import { isValidIpv4 } from '../../packet/addr.ts';
import type { IpStack, UdpError } from '../ipv4/ip-stack.ts';
import { TcpError } from './errors.ts';

export interface UdpRemoteInfo {
  address: string;
  port: number;
  family: 'IPv4';
  size: number;
}

export interface UdpSocketEvents {
  message: [Buffer, UdpRemoteInfo];
  error: [TcpError];
  close: [];
}

export class UdpSocket extends EventEmitter<UdpSocketEvents> {
  private binding?: { port: number; close(): void };

  constructor(private readonly stack: IpStack) {
    super();
  }

  /** Binds `port` (0: an ephemeral one) on all local addresses. Throws TcpError EADDRINUSE. */
  bind(port = 0): this {
    if (this.binding) throw new TcpError('EINVAL', 'bind', undefined, port, 'already bound');
    try {
      this.binding = this.stack.bindUdp(port, {
        message: (m) => this.emit('message', m.data, { address: m.srcIp, port: m.srcPort, family: 'IPv4', size: m.data.length }),
        error: (e: UdpError) =>
          this.listenerCount('error') &&
          this.emit('error', new TcpError(e.type === 'time-exceeded' ? 'EHOSTUNREACH' : e.code === 3 ? 'ECONNREFUSED' : 'EHOSTUNREACH', 'recvmsg', e.dstIp, e.dstPort)),
      });
    } catch (e) {
      if ((e as { code?: string }).code === 'EADDRINUSE') throw new TcpError('EADDRINUSE', 'bind', '0.0.0.0', port);
      throw e;
    }
    return this;
  }

  address(): { address: string; port: number; family: 'IPv4' } {
    return { address: '0.0.0.0', port: this.binding?.port ?? 0, family: 'IPv4' };
  }

  /** Sends one datagram (binding an ephemeral port first if needed). False if the stack refused it. */
  send(data: Buffer | string, port: number, host: string): boolean {
    if (!this.binding) this.bind(0);
    const dst = host === 'localhost' ? '127.0.0.1' : host;
    if (!isValidIpv4(dst)) throw new TcpError('EINVAL', 'send', host, port, 'host must be an IPv4 address');
    const r = this.stack.sendUdp(this.binding!.port, dst, port, typeof data === 'string' ? Buffer.from(data) : data);
    if (!r.ok) {
      const err = new TcpError(r.error === 'EMSGSIZE' ? 'EMSGSIZE' : r.error === 'ENETUNREACH' ? 'ENETUNREACH' : 'EINVAL', 'send', dst, port);
      queueMicrotask(() => this.listenerCount('error') && this.emit('error', err));
      return false;
    }
    return true;
  }

  close(): void {
    if (!this.binding) return;
    this.binding.close();
    this.binding = undefined;
    queueMicrotask(() => this.emit('close'));
  }
}
