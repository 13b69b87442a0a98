/**
 * `ss [-t] [-l] [-a] [-n] [-i]`: the pod's TCP sockets as iproute2's ss shows
 * them (state, queues, addresses), with `-i` the congestion and RTT details
 * (cwnd, ssthresh, rto, rtt, retransmits). `ps`: the containers of the pod,
 * the built-in app each image runs, what it listens on, its counters, and
 * why a container failed to start.
 */
import { parseArgs } from 'node:util';
import { podApps } from '../apps/index.ts';
import type { TcpState } from '../netstack/tcp/connection.ts';
import type { ExecContext } from './types.ts';

const SS_STATE: Record<TcpState, string> = {
  CLOSED: 'UNCONN',
  'SYN-SENT': 'SYN-SENT',
  'SYN-RECEIVED': 'SYN-RECV',
  ESTABLISHED: 'ESTAB',
  'FIN-WAIT-1': 'FIN-WAIT-1',
  'FIN-WAIT-2': 'FIN-WAIT-2',
  'CLOSE-WAIT': 'CLOSE-WAIT',
  CLOSING: 'CLOSING',
  'LAST-ACK': 'LAST-ACK',
  'TIME-WAIT': 'TIME-WAIT',
};

export function ss(ctx: ExecContext): Promise<number> {
  const { values } = parseArgs({
    args: ctx.argv.slice(1),
    options: { t: { type: 'boolean' }, u: { type: 'boolean' }, l: { type: 'boolean' }, a: { type: 'boolean' }, n: { type: 'boolean' }, i: { type: 'boolean' } },
  });
  const tcp = ctx.pod.tcp;
  const rows: string[][] = [['State', 'Recv-Q', 'Send-Q', 'Local Address:Port', 'Peer Address:Port']];
  const info: (string | undefined)[] = [undefined];
  if (values.l || values.a) {
    for (const l of tcp.listening()) {
      rows.push(['LISTEN', String(l.halfOpen), String(l.backlog), `${l.host === '0.0.0.0' ? '0.0.0.0' : l.host}:${l.port}`, '0.0.0.0:*']);
      info.push(undefined);
    }
  }
  if (!values.l) {
    for (const c of tcp.connections()) {
      const i = c.info();
      rows.push([SS_STATE[c.state], '0', String(i.queued), `${c.localAddr}:${c.localPort}`, `${c.remoteAddr}:${c.remotePort}`]);
      const st = c.stats;
      info.push(
        values.i
          ? `\t newreno wscale:${i.sndShift},${i.rcvShift} rto:${i.rto} rtt:${i.srtt}/${i.rttvar} mss:${i.sndMss} rcvmss:${i.rcvMss} cwnd:${Math.round(Number(i.cwnd) / Number(i.sndMss))} ssthresh:${
              Number(i.ssthresh) > 1e9 ? 'inf' : Math.round(Number(i.ssthresh) / Number(i.sndMss))
            } bytes_sent:${st.bytesSent} bytes_retrans:${st.bytesRetrans} bytes_received:${st.bytesReceived} segs_out:${st.segsOut} segs_in:${st.segsIn} retrans:${st.retransmits} fast_retrans:${st.fastRetransmits} timeouts:${st.timeouts} snd_wnd:${i.sndWnd} rcv_wnd:${i.rcvWnd}`
          : undefined,
      );
    }
  }
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  rows.forEach((r, n) => {
    ctx.stdout(r.map((c, k) => (k === r.length - 1 ? c : c.padEnd(widths[k] + 2))).join('') + '\n');
    if (info[n]) ctx.stdout(info[n] + '\n');
  });
  return Promise.resolve(0);
}

export function ps(ctx: ExecContext): Promise<number> {
  const apps = podApps(ctx.pod);
  if (!apps.length) {
    ctx.stdout('no containers started by the agent in this pod\n');
    return Promise.resolve(0);
  }
  for (const a of apps) {
    const state = a.error ? `FAILED: ${a.error}` : a.status ? `running, listening on ${a.status.listening.join(', ') || 'nothing'}` : 'running (no listener)';
    ctx.stdout(`${a.container}  image=${a.image}  app=${a.app}  ${state}\n`);
    if (a.status && Object.keys(a.status.counters).length) {
      ctx.stdout(`  ${Object.entries(a.status.counters).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    }
  }
  return Promise.resolve(0);
}
