/**
 * What CoreDNS's `kubernetes` plugin answers, as a pure function of the
 * cluster's objects (the Kubernetes DNS specification, "DNS-Based Service
 * Discovery", schema 1.1.0), for the zone `cluster.local` and the reverse
 * zone `in-addr.arpa`, with CoreDNS's defaults (`ttl 5`, `pods insecure`):
 *
 * - `svc.ns.svc.cluster.local` A: the ClusterIP; a headless Service's ready
 *   endpoint addresses (podlab serves no ExternalName Services).
 * - `_port._proto.svc.ns.svc.cluster.local` SRV (named ports only), `svc.ns.svc...`
 *   SRV for every port: priority 0, weight 100 shared by the records,
 *   the target the Service (ClusterIP) or each endpoint (headless, named
 *   by its hostname or its address with dashes), with the targets' A
 *   records in the additional section.
 * - `ep.svc.ns.svc.cluster.local` A: one endpoint of a headless Service.
 * - `a-b-c-d.ns.pod.cluster.local` A: a-b-c-d (`pods insecure` echoes it).
 * - PTR `d.c.b.a.in-addr.arpa`: a ClusterIP -> the Service, an endpoint
 *   address -> the endpoint's name under its Service. Other addresses are
 *   not the plugin's (CoreDNS falls through to `forward`): NXDOMAIN here.
 * - a name that does not exist: NXDOMAIN; one that exists without records
 *   of the type asked (AAAA of a Service, `ns.svc.cluster.local`): NOERROR
 *   and no answer. Both carry the zone's SOA in the authority section.
 * - a name outside the zones: SERVFAIL, as CoreDNS without `forward` ("no
 *   next plugin found").
 */
import { DnsRcode, DnsType, DNS_CLASS_IN, type DnsMessage, type DnsQuestion, type DnsRecord } from '../../packet/dns.ts';
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';
import type { KubeObject } from '../../control-plane/types.ts';
import { DnsIndex } from './dns-index.ts';

export const CLUSTER_DOMAIN = 'cluster.local';
/** CoreDNS's kubernetes plugin default TTL. */
export const DNS_TTL = 5;
/** The negative-answer TTL CoreDNS puts on the SOA (its minimum field too). */
export const SOA_TTL = 30;

/** The objects the answers come from, as lists (tests; an index is built from them per query). */
export interface ClusterObjects {
  services: readonly Service[];
  slices: readonly EndpointSlice[];
  namespaces: readonly KubeObject[];
}

/**
 * The lookups the answers need, each costing about its result, not the
 * cluster's size (./dns-index.ts keeps one from the informers' events).
 */
export interface ClusterIndex {
  hasNamespace(ns: string): boolean;
  service(ns: string, name: string): Service | undefined;
  /** The Service's EndpointSlices (label `kubernetes.io/service-name`), oldest first. */
  slicesOf(ns: string, svc: string): Iterable<EndpointSlice>;
  /** The Service whose ClusterIP this is. */
  serviceByClusterIP(ip: string): Service | undefined;
  /** The Services with a slice listing this address (ready or not; the caller checks). */
  servicesWithAddress(ip: string): Iterable<Service>;
}

interface Endpoint {
  name: string;
  ip: string;
}

/** An endpoint's DNS label: its hostname when set, else its address with dashes (CoreDNS's endpointHostname). */
function endpointLabel(hostname: string | undefined, ip: string): string {
  return hostname || ip.replace(/\./g, '-');
}

function readyEndpoints(o: ClusterIndex, ns: string, svc: string): Endpoint[] {
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  for (const s of o.slicesOf(ns, svc)) {
    if (s.addressType !== 'IPv4') continue;
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses) {
        if (seen.has(ip)) continue;
        seen.add(ip);
        out.push({ name: endpointLabel((e as { hostname?: string }).hostname, ip), ip });
      }
    }
  }
  return out.sort((a, b) => a.ip.localeCompare(b.ip, 'en', { numeric: true }));
}

function slicePorts(o: ClusterIndex, ns: string, svc: string): { name: string; port: number; protocol: string }[] {
  for (const s of o.slicesOf(ns, svc)) {
    return (s.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port ?? 0, protocol: p.protocol ?? 'TCP' }));
  }
  return [];
}

const isHeadless = (s: Service) => s.spec?.clusterIP === 'None';

/** The SOA of the zone (CoreDNS: `ns.dns.ZONE. hostmaster.ZONE. SERIAL 7200 1800 86400 TTL`). */
export function soaRecord(zone: string, serial: number): DnsRecord {
  return {
    name: zone,
    type: DnsType.SOA,
    class: DNS_CLASS_IN,
    ttl: SOA_TTL,
    data: { type: DnsType.SOA, soa: { mname: `ns.dns.${CLUSTER_DOMAIN}`, rname: `hostmaster.${CLUSTER_DOMAIN}`, serial, refresh: 7200, retry: 1800, expire: 86400, minimum: SOA_TTL } },
  };
}

const a = (name: string, ip: string): DnsRecord => ({ name, type: DnsType.A, class: DNS_CLASS_IN, ttl: DNS_TTL, data: { type: DnsType.A, address: ip } });

interface Lookup {
  /** The name exists in the zone (NOERROR/NODATA rather than NXDOMAIN). */
  exists: boolean;
  answers: DnsRecord[];
  additionals: DnsRecord[];
}

const none = (exists: boolean): Lookup => ({ exists, answers: [], additionals: [] });

function lookupForward(o: ClusterIndex, q: DnsQuestion, labels: string[]): Lookup {
  // labels are the part before `cluster.local`, lower case, rightmost last.
  const n = labels.length;
  if (n === 0) return none(true);
  const kind = labels[n - 1];
  if (kind !== 'svc' && kind !== 'pod') return none(false);
  if (n === 1) return none(true);
  const ns = labels[n - 2];
  if (!o.hasNamespace(ns)) return none(false);
  if (n === 2) return none(true);
  if (kind === 'pod') {
    if (n !== 3) return none(false);
    const m = /^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$/.exec(labels[0]);
    if (!m || m.slice(1).some((x) => Number(x) > 255)) return none(false);
    return { exists: true, answers: q.type === DnsType.A ? [a(q.name, m.slice(1).join('.'))] : [], additionals: [] };
  }
  const svcName = labels[n - 3];
  const svc = o.service(ns, svcName);
  if (!svc) return none(false);
  const svcFqdn = `${svcName}.${ns}.svc.${CLUSTER_DOMAIN}`;
  const eps = isHeadless(svc) ? readyEndpoints(o, ns, svcName) : [];
  if (n === 3) {
    if (q.type === DnsType.A) {
      if (!isHeadless(svc)) return svc.spec?.clusterIP ? { exists: true, answers: [a(q.name, svc.spec.clusterIP)], additionals: [] } : none(true);
      return { exists: true, answers: eps.map((e) => a(q.name, e.ip)), additionals: [] };
    }
    if (q.type === DnsType.SRV) return srv(o, q.name, svc, svcFqdn, eps, undefined);
    return none(true);
  }
  if (n === 4) {
    // An endpoint of a headless Service.
    const ep = eps.find((e) => e.name === labels[0]);
    if (!ep) return none(false);
    return { exists: true, answers: q.type === DnsType.A ? [a(q.name, ep.ip)] : [], additionals: [] };
  }
  if (n === 5 && labels[0].startsWith('_') && labels[1].startsWith('_')) {
    const port = labels[0].slice(1);
    const proto = labels[1].slice(1);
    const r = srv(o, q.name, svc, svcFqdn, eps, { port, proto });
    // A port the Service does not have is a name that does not exist.
    if (!r.answers.length) return none(false);
    return q.type === DnsType.SRV ? r : none(true);
  }
  return none(false);
}

function srv(o: ClusterIndex, owner: string, svc: Service, svcFqdn: string, eps: Endpoint[], want: { port: string; proto: string } | undefined): Lookup {
  const ns = svc.metadata.namespace ?? 'default';
  const ports = isHeadless(svc)
    ? slicePorts(o, ns, svc.metadata.name)
    : (svc.spec?.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' }));
  const chosen = ports.filter((p) => !want || (p.name !== '' && p.name === want.port && p.protocol.toLowerCase() === want.proto));
  const targets: { name: string; ip: string }[] = isHeadless(svc) ? eps.map((e) => ({ name: `${e.name}.${svcFqdn}`, ip: e.ip })) : svc.spec?.clusterIP ? [{ name: svcFqdn, ip: svc.spec.clusterIP }] : [];
  const answers: DnsRecord[] = [];
  const additionals: DnsRecord[] = [];
  const count = chosen.length * targets.length;
  // CoreDNS shares a weight of 100 among the records of one answer.
  const weight = count ? Math.floor(100 / count) : 0;
  for (const p of chosen) {
    for (const t of targets) {
      answers.push({ name: owner, type: DnsType.SRV, class: DNS_CLASS_IN, ttl: DNS_TTL, data: { type: DnsType.SRV, srv: { priority: 0, weight, port: p.port, target: t.name } } });
      if (!additionals.some((r) => r.name === t.name)) additionals.push(a(t.name, t.ip));
    }
  }
  return { exists: true, answers, additionals };
}

function lookupReverse(o: ClusterIndex, q: DnsQuestion, ip: string): Lookup {
  const ptr = (target: string): Lookup => ({ exists: true, answers: q.type === DnsType.PTR ? [{ name: q.name, type: DnsType.PTR, class: DNS_CLASS_IN, ttl: DNS_TTL, data: { type: DnsType.PTR, target } }] : [], additionals: [] });
  const byVip = o.serviceByClusterIP(ip);
  if (byVip) return ptr(`${byVip.metadata.name}.${byVip.metadata.namespace}.svc.${CLUSTER_DOMAIN}`);
  for (const s of o.servicesWithAddress(ip)) {
    const ns = s.metadata.namespace ?? 'default';
    for (const e of readyEndpoints(o, ns, s.metadata.name)) if (e.ip === ip) return ptr(`${e.name}.${s.metadata.name}.${ns}.svc.${CLUSTER_DOMAIN}`);
  }
  return none(false);
}

/** Splits `name` into the labels under `zone` (lower case), or undefined when it is not in the zone. */
function under(name: string, zone: string): string[] | undefined {
  const n = name.toLowerCase();
  if (n === zone) return [];
  if (!n.endsWith(`.${zone}`)) return undefined;
  return n.slice(0, -zone.length - 1).split('.');
}

/**
 * The response to `query` (the same id, question and RD bit; AA set for the
 * zones; RA clear, as CoreDNS without `forward`). `serial` is the SOA serial.
 */
export function answerQuery(objects: ClusterIndex | ClusterObjects, query: DnsMessage, serial: number): DnsMessage {
  const o = 'hasNamespace' in objects ? objects : DnsIndex.of(objects);
  const base: DnsMessage = {
    id: query.id,
    flags: { qr: true, opcode: query.flags.opcode, aa: false, tc: false, rd: query.flags.rd, ra: false, z: false, ad: false, cd: query.flags.cd, rcode: DnsRcode.NOERROR },
    questions: query.questions,
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (query.flags.opcode !== 0) return { ...base, flags: { ...base.flags, rcode: DnsRcode.NOTIMP } };
  if (query.questions.length !== 1 || query.flags.qr) return { ...base, flags: { ...base.flags, rcode: DnsRcode.FORMERR } };
  const q = query.questions[0];
  if (q.class !== DNS_CLASS_IN) return { ...base, flags: { ...base.flags, rcode: DnsRcode.REFUSED } };
  let zone: string;
  let found: Lookup;
  const fwd = under(q.name, CLUSTER_DOMAIN);
  const rev = under(q.name, 'in-addr.arpa');
  if (fwd) {
    zone = CLUSTER_DOMAIN;
    if (fwd.length === 0 && (q.type === DnsType.SOA || q.type === DnsType.NS)) {
      const soa = soaRecord(CLUSTER_DOMAIN, serial);
      const rr: DnsRecord = q.type === DnsType.SOA ? { ...soa, name: q.name } : { name: q.name, type: DnsType.NS, class: DNS_CLASS_IN, ttl: DNS_TTL, data: { type: DnsType.NS, target: `ns.dns.${CLUSTER_DOMAIN}` } };
      return { ...base, flags: { ...base.flags, aa: true }, answers: [rr] };
    }
    found = lookupForward(o, q, fwd);
  } else if (rev && rev.length === 4 && rev.every((x) => /^\d{1,3}$/.test(x) && Number(x) < 256)) {
    zone = 'in-addr.arpa';
    found = lookupReverse(o, q, [...rev].reverse().join('.'));
  } else if (rev) {
    zone = 'in-addr.arpa';
    found = none(rev.length < 4);
  } else {
    return { ...base, flags: { ...base.flags, rcode: DnsRcode.SERVFAIL } };
  }
  const flags = { ...base.flags, aa: true, rcode: found.exists ? DnsRcode.NOERROR : DnsRcode.NXDOMAIN };
  if (!found.answers.length) return { ...base, flags, authorities: [soaRecord(zone === CLUSTER_DOMAIN ? CLUSTER_DOMAIN : zone, serial)] };
  return { ...base, flags, answers: found.answers, additionals: found.additionals };
}

