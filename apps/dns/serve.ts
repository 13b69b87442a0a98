/**
 * One DNS query from its bytes to the bytes of the response, as CoreDNS's
 * server does around its plugins: FORMERR for a query that does not parse
 * (when its header can be read), nothing for a response, and the answer cut
 * to the header and question with TC set when it exceeds what the transport
 * carries (512 bytes over UDP, or the client's EDNS size up to 1232; TCP's
 * 65,535). Pure: both the CoreDNS worker (./worker.ts) and the pod's thread
 * (a SERVFAIL while the worker is away) use it.
 */
import { DnsRcode, DnsType, parseDns, serializeDns, type DnsMessage } from '../../packet/dns.ts';
import { DNS_TCP_MAX } from '../../packet/dns-tcp.ts';
import { isWireError } from '../../packet/errors.ts';

export type DnsTransport = 'udp' | 'tcp';

/** What became of a query, for the app's counters. */
export interface Served {
  /** The response's bytes; none for a response or an unreadable header. */
  out?: Buffer;
  outcome: 'answered' | 'nxdomain' | 'servfail' | 'malformed' | 'ignored';
  truncated: boolean;
}

/** FORMERR for a query whose header we can read (RFC 1035 4.1.1); less than that, nothing. */
function formerr(data: Buffer): Buffer | undefined {
  if (data.length < 12 || data[2] & 0x80) return undefined;
  const h = Buffer.from(data.subarray(0, 12));
  h[2] = 0x80 | (h[2] & 0x79);
  h[3] = DnsRcode.FORMERR;
  h.fill(0, 4, 12);
  return h;
}

/** The parsed query, or what to do instead (FORMERR, or nothing for a response). */
export function takeQuery(data: Buffer): DnsMessage | Served {
  const q = parseDns(data);
  if (isWireError(q)) {
    const out = formerr(data);
    return { ...(out ? { out } : {}), outcome: 'malformed', truncated: false };
  }
  if (q.flags.qr) return { outcome: 'ignored', truncated: false };
  return q;
}

/** SERVFAIL to `q`: no apiserver, or not synced, or no worker to ask. */
export function servfail(q: DnsMessage): DnsMessage {
  return { ...q, flags: { ...q.flags, qr: true, ra: false, aa: false, ad: false, rcode: DnsRcode.SERVFAIL }, answers: [], authorities: [], additionals: [] };
}

/** `r` (the answer to `q`) as bytes for `transport`. */
export function respond(q: DnsMessage, r: DnsMessage, transport: DnsTransport): Served {
  // EDNS (RFC 6891): echo an OPT record carrying our own UDP size when the query had one.
  const opt = q.additionals.find((x) => x.type === DnsType.OPT);
  const limit = transport === 'tcp' ? DNS_TCP_MAX : opt ? Math.max(512, Math.min(opt.class, 1232)) : 512;
  const ours = opt ? [{ name: '', type: DnsType.OPT, class: 1232, ttl: 0, data: { type: DnsType.OPT, raw: Buffer.alloc(0) } }] : [];
  const full = { ...r, additionals: [...r.additionals, ...ours] };
  let out = serializeDns(full);
  let truncated = false;
  if (out.length > limit) {
    truncated = true;
    // The OPT record stays in a truncated answer (RFC 6891 7), so the client still sees our size.
    out = serializeDns({ ...full, flags: { ...full.flags, tc: true }, answers: [], authorities: [], additionals: ours });
  }
  const outcome = r.flags.rcode === DnsRcode.NXDOMAIN ? 'nxdomain' : r.flags.rcode === DnsRcode.SERVFAIL ? 'servfail' : 'answered';
  return { out, outcome, truncated };
}
