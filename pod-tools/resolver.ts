/**
 * The pod's stub resolver: `/etc/resolv.conf` as the kubelet writes it for
 * `dnsPolicy: ClusterFirst` and lookups as glibc's res_search makes them.
 *
 * - `nameserver` the cluster DNS (kube-dns' ClusterIP), `search
 *   NS.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`.
 * - a name with fewer than ndots dots is tried with each search suffix
 *   first, then as given; one with more is tried as given first; a trailing
 *   dot means as given only. NXDOMAIN and an empty answer move to the next
 *   candidate.
 * - each try is a real UDP query from an ephemeral port of the pod's stack
 *   to the nameserver's port 53 (so it crosses kube-proxy's DNAT and shows
 *   in capture and trace), retried once after 5 s without an answer (glibc's
 *   `timeout:5 attempts:2`). Only A is asked: podlab pods are IPv4-only.
 * - an answer with TC set (it did not fit 512 bytes) is asked again over TCP
 *   to the same server and port, as glibc's res_send does: one connection,
 *   the query and the answer each behind a two-byte length (RFC 1035 4.2.2).
 * - `/etc/hosts` (localhost, the pod's own name) answers before DNS, as nss
 *   `files dns` does.
 */
import { isValidIpv4 } from '../packet/addr.ts';
import { DnsRcode, DnsType, dnsFlags, parseDns, serializeDns, type DnsMessage } from '../packet/dns.ts';
import { DnsTcpReader, frameDnsTcp } from '../packet/dns-tcp.ts';
import { isWireError } from '../packet/errors.ts';
import type { TcpError } from '../netstack/tcp/errors.ts';
import type { ExecContext } from './types.ts';

/** kube-dns' ClusterIP in the default service CIDR (10.96.0.0/12): its tenth address, as kubeadm picks it. */
export const DEFAULT_CLUSTER_DNS = '10.96.0.10';
export const CLUSTER_DOMAIN = 'cluster.local';

export interface ResolvConf {
  nameserver: string;
  search: string[];
  ndots: number;
}

/** The kubelet's resolv.conf for a pod of `namespace` (ClusterFirst). */
export function kubeletResolvConf(namespace: string, nameserver = DEFAULT_CLUSTER_DNS): ResolvConf {
  return { nameserver, search: [`${namespace}.svc.${CLUSTER_DOMAIN}`, `svc.${CLUSTER_DOMAIN}`, CLUSTER_DOMAIN], ndots: 5 };
}

/** The file's text, byte for byte as the kubelet writes it. */
export function formatResolvConf(r: ResolvConf): string {
  return `search ${r.search.join(' ')}\nnameserver ${r.nameserver}\noptions ndots:${r.ndots}\n`;
}

/** The pod's resolv.conf: from the context, else the default for its namespace. */
export function resolvConfOf(ctx: ExecContext): ResolvConf {
  return ctx.resolvConf ?? kubeletResolvConf(ctx.pod.opts.namespace);
}

/** `/etc/hosts` as the kubelet writes it (kubernetes-managed hosts file). */
export function etcHosts(ctx: ExecContext): string {
  return [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
    `${ctx.pod.ip}\t${ctx.pod.opts.name}`,
    '',
  ].join('\n');
}

export type QueryResult =
  | {
      ok: true;
      response: DnsMessage;
      server: string;
      ms: number;
      bytes: number;
      /** How the answer came: over UDP, or over TCP (asked so, or after a truncated UDP answer). */
      transport: 'udp' | 'tcp';
      /** A UDP answer came back with TC set before this one was asked over TCP. */
      truncated?: boolean;
    }
  | { ok: false; error: 'timeout' | 'unreachable' | 'aborted'; detail?: string; truncated?: boolean };

export interface QueryOptions {
  server?: string;
  port?: number;
  /** Per-attempt timeout (glibc: 5 s). */
  timeoutMs?: number;
  attempts?: number;
  rd?: boolean;
  /** Add an EDNS OPT record with this UDP size (dig does, 1232). */
  edns?: number;
  /** Ask over TCP from the start (dig +tcp, glibc's `options use-vc`). */
  tcp?: boolean;
  /** Keep a truncated UDP answer instead of asking again over TCP (dig +ignore). */
  ignoreTc?: boolean;
}

type Attempt = { response: DnsMessage; bytes: number } | { ok: false; error: 'unreachable' | 'aborted'; detail?: string } | undefined;

/** One DNS question from the pod, with retries; over UDP, then TCP if the answer was truncated. */
export async function queryDns(ctx: ExecContext, name: string, type: number, o: QueryOptions = {}): Promise<QueryResult> {
  const server = o.server ?? resolvConfOf(ctx).nameserver;
  const port = o.port ?? 53;
  const attempts = o.attempts ?? 2;
  const timeoutMs = o.timeoutMs ?? 5000;
  const build = (): DnsMessage => ({
    id: ctx.rng.int(0, 0xffff),
    flags: dnsFlags({ rd: o.rd !== false }),
    questions: [{ name, type, class: 1 }],
    answers: [],
    authorities: [],
    additionals: o.edns ? [{ name: '', type: DnsType.OPT, class: o.edns, ttl: 0, data: { type: DnsType.OPT, raw: Buffer.alloc(0) } }] : [],
  });
  const run = async (transport: 'udp' | 'tcp', truncated: boolean): Promise<QueryResult> => {
    for (let a = 0; a < attempts; a++) {
      if (ctx.signal.aborted) return { ok: false, error: 'aborted' };
      const start = ctx.clock.now();
      const query = build();
      const r = transport === 'udp' ? await udpAttempt(ctx, server, port, query, timeoutMs) : await tcpAttempt(ctx, server, port, query, timeoutMs);
      if (r && 'response' in r) return { ok: true, response: r.response, server, ms: ctx.clock.now() - start, bytes: r.bytes, transport, ...(truncated ? { truncated } : {}) };
      if (r) return { ...r, ...(truncated ? { truncated } : {}) };
    }
    return { ok: false, error: 'timeout', ...(truncated ? { truncated } : {}) };
  };
  if (o.tcp) return run('tcp', false);
  const udp = await run('udp', false);
  if (!udp.ok || !udp.response.flags.tc || o.ignoreTc) return udp;
  return run('tcp', true);
}

/** True when `resp` answers `query` (RFC 5452's checks: id, a response, the same question). */
function answers(query: DnsMessage, resp: DnsMessage): boolean {
  return resp.id === query.id && resp.flags.qr && resp.questions[0]?.name.toLowerCase() === query.questions[0].name.toLowerCase();
}

function udpAttempt(ctx: ExecContext, server: string, port: number, query: DnsMessage, timeoutMs: number): Promise<Attempt> {
  return new Promise<Attempt>((resolve) => {
    let done = false;
    const finish = (v: Attempt) => {
      if (done) return;
      done = true;
      timer.cancel();
      ctx.signal.removeEventListener('abort', onAbort);
      sock.close();
      resolve(v);
    };
    const onAbort = () => finish({ ok: false, error: 'aborted' });
    const sock = bindRandomPort(ctx, {
      message: (m) => {
        // Only the server's answer to this id and question counts.
        if (m.srcIp !== server || m.srcPort !== port) return;
        const resp = parseDns(m.data);
        if (isWireError(resp) || !answers(query, resp)) return;
        finish({ response: resp, bytes: m.data.length });
      },
      error: (e) => finish({ ok: false, error: 'unreachable', detail: `${e.type} from ${e.from}` }),
    });
    const timer = ctx.clock.setTimeout(() => finish(undefined), timeoutMs);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const sent = ctx.pod.stack.sendUdp(sock.port, server, port, serializeDns(query));
    if (!sent.ok) finish({ ok: false, error: 'unreachable', detail: sent.error });
  });
}

/** One query over its own TCP connection: connect, send it framed, read the framed answer, close. */
function tcpAttempt(ctx: ExecContext, server: string, port: number, query: DnsMessage, timeoutMs: number): Promise<Attempt> {
  return new Promise<Attempt>((resolve) => {
    let done = false;
    const sock = ctx.pod.tcp.connect({ host: server, port });
    const reader = new DnsTcpReader();
    const finish = (v: Attempt) => {
      if (done) return;
      done = true;
      timer.cancel();
      ctx.signal.removeEventListener('abort', onAbort);
      if (v && 'response' in v) sock.end();
      else sock.destroy();
      resolve(v);
    };
    const onAbort = () => finish({ ok: false, error: 'aborted' });
    sock.on('connect', () => sock.write(frameDnsTcp(serializeDns(query))));
    sock.on('data', (chunk) => {
      const msgs = reader.push(chunk);
      if (isWireError(msgs)) return finish({ ok: false, error: 'unreachable', detail: msgs.message });
      for (const m of msgs) {
        const resp = parseDns(m);
        if (!isWireError(resp) && answers(query, resp)) return finish({ response: resp, bytes: m.length });
      }
    });
    sock.on('error', (e: TcpError) => finish({ ok: false, error: 'unreachable', detail: e.text }));
    sock.on('close', () => finish({ ok: false, error: 'unreachable', detail: 'connection closed before an answer' }));
    const timer = ctx.clock.setTimeout(() => finish(undefined), timeoutMs);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A UDP socket on a random port of Linux's ephemeral range, as the kernel gives
 * glibc's resolver (RFC 5452): each query is a new 5-tuple, so conntrack and
 * kube-proxy pick a CoreDNS replica afresh and a retry can find a live one.
 */
function bindRandomPort(ctx: ExecContext, handlers: Parameters<ExecContext['pod']['stack']['bindUdp']>[1]): { port: number; close(): void } {
  for (let i = 0; i < 16; i++) {
    try {
      return ctx.pod.stack.bindUdp(ctx.rng.int(32768, 60999), handlers);
    } catch {
      // in use: draw again
    }
  }
  return ctx.pod.stack.bindUdp(0, handlers);
}

/** The names res_search tries for `name`, in order. */
export function searchCandidates(name: string, rc: ResolvConf): string[] {
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const dots = name.split('.').length - 1;
  const searched = rc.search.map((s) => `${name}.${s}`);
  return dots >= rc.ndots ? [name, ...searched] : [...searched, name];
}

export type Resolved = { ok: true; address: string; name: string } | { ok: false; error: 'NXDOMAIN' | 'SERVFAIL' | 'timeout' | 'unreachable' | 'aborted'; detail?: string };

/** getaddrinfo for one IPv4 address: hosts file, then DNS with the search list. */
export async function resolveName(ctx: ExecContext, host: string): Promise<Resolved> {
  if (isValidIpv4(host)) return { ok: true, address: host, name: host };
  const bare = host.replace(/\.$/, '').toLowerCase();
  if (bare === 'localhost') return { ok: true, address: '127.0.0.1', name: 'localhost' };
  if (bare === ctx.pod.opts.name.toLowerCase()) return { ok: true, address: ctx.pod.ip, name: ctx.pod.opts.name };
  let last: Resolved = { ok: false, error: 'NXDOMAIN' };
  for (const cand of searchCandidates(host, resolvConfOf(ctx))) {
    const r = await queryDns(ctx, cand, DnsType.A);
    if (!r.ok) return { ok: false, error: r.error, detail: r.detail };
    const rc = r.response.flags.rcode;
    const a = r.response.answers.find((x) => x.type === DnsType.A);
    if (rc === DnsRcode.NOERROR && a && 'address' in a.data) return { ok: true, address: a.data.address, name: cand };
    if (rc === DnsRcode.SERVFAIL) last = { ok: false, error: 'SERVFAIL' };
  }
  return last;
}

/** For the tools: an address, or the message they print (`Could not resolve host: NAME`'s reason). */
export async function resolveForTool(ctx: ExecContext, host: string): Promise<string | undefined> {
  const r = await resolveName(ctx, host);
  return r.ok ? r.address : undefined;
}
