/**
 * `nslookup` (busybox 1.36's output), `dig` (BIND 9.18's default sections
 * and `+short`) and `cat` for the files a pod's resolver reads
 * (/etc/resolv.conf, /etc/hosts, /etc/hostname). Every query is a real UDP
 * datagram from the pod's stack (pod-tools/resolver.ts).
 */
import { isValidIpv4 } from '../packet/addr.ts';
import { DnsRcode, DnsType, dnsRcodeName, dnsTypeName, reverseName, type DnsMessage, type DnsRecord } from '../packet/dns.ts';
import { etcHosts, formatResolvConf, queryDns, resolvConfOf, searchCandidates } from './resolver.ts';
import { UsageError, type ExecContext } from './types.ts';
import { imfFixdate } from '../common/utc-time.ts';

/** `cat FILE...` over the few files a podlab pod has. */
export function cat(ctx: ExecContext): Promise<number> {
  const files: Record<string, () => string> = {
    '/etc/resolv.conf': () => formatResolvConf(resolvConfOf(ctx)),
    '/etc/hosts': () => etcHosts(ctx),
    '/etc/hostname': () => `${ctx.pod.opts.name}\n`,
  };
  let code = 0;
  for (const f of ctx.argv.slice(1)) {
    const read = files[f];
    if (read) ctx.stdout(read());
    else {
      ctx.stderr(`cat: can't open '${f}': No such file or directory\n`);
      code = 1;
    }
  }
  return Promise.resolve(code);
}

function rdataText(rr: DnsRecord): string {
  const d = rr.data;
  if ('address' in d) return d.address;
  if ('target' in d) return `${d.target}.`;
  if ('srv' in d) return `${d.srv.priority} ${d.srv.weight} ${d.srv.port} ${d.srv.target}.`;
  if ('soa' in d) return `${d.soa.mname}. ${d.soa.rname}. ${d.soa.serial} ${d.soa.refresh} ${d.soa.retry} ${d.soa.expire} ${d.soa.minimum}`;
  if ('texts' in d) return d.texts.map((t) => JSON.stringify(t.toString('latin1'))).join(' ');
  return `\\# ${d.raw.length} ${d.raw.toString('hex')}`;
}

/** Fields at dig's columns (tab stops of 8), a single space when the text already reaches the column. */
function columns(head: string, fields: string[], at: number[]): string {
  let line = head;
  let col = head.length;
  fields.forEach((f, i) => {
    if (col >= at[i]) {
      line += ' ';
      col++;
    } else {
      while (col < at[i]) {
        line += '\t';
        col = (Math.floor(col / 8) + 1) * 8;
      }
    }
    line += f;
    col += f.length;
  });
  return line;
}

/** One record as dig prints it: TTL, class, type and data at columns 24, 32, 40 and 48. */
export function digRecord(rr: DnsRecord): string {
  return columns(`${rr.name}.`, [String(rr.ttl), 'IN', dnsTypeName(rr.type), rdataText(rr)], [24, 32, 40, 48]);
}

/** `nslookup [-type=T] NAME [SERVER]`, as busybox prints it. */
export async function nslookup(ctx: ExecContext): Promise<number> {
  let type: number = DnsType.A;
  const pos: string[] = [];
  for (const a of ctx.argv.slice(1)) {
    const m = /^-(?:type|query|q|t)=(\w+)$/i.exec(a);
    if (m) {
      const t = (DnsType as Record<string, number>)[m[1].toUpperCase()];
      if (t === undefined) throw new UsageError(`nslookup: invalid query type '${m[1]}'`);
      type = t;
    } else if (a.startsWith('-')) throw new UsageError(`nslookup: unrecognized option '${a}'\nUsage: nslookup [-type=QUERY_TYPE] HOST [DNS_SERVER]`);
    else pos.push(a);
  }
  if (pos.length < 1 || pos.length > 2) throw new UsageError('Usage: nslookup [-type=QUERY_TYPE] HOST [DNS_SERVER]');
  const rc = resolvConfOf(ctx);
  const server = pos[1] ?? rc.nameserver;
  if (!isValidIpv4(server)) throw new UsageError(`nslookup: bad server address '${server}'`);
  ctx.stdout(`Server:\t\t${server}\nAddress:\t${server}:53\n\n`);
  const name = pos[0];
  const reverse = isValidIpv4(name);
  const candidates = reverse ? [reverseName(name)] : searchCandidates(name, rc);
  const qtype = reverse ? DnsType.PTR : type;
  let lastErr = 'NXDOMAIN';
  for (const cand of candidates) {
    const r = await queryDns(ctx, cand, qtype, { server });
    if (!r.ok) {
      ctx.stdout(`;; connection timed out; no servers could be reached\n\n`);
      return 1;
    }
    const resp = r.response;
    if (resp.flags.rcode === DnsRcode.NOERROR && resp.answers.length) {
      for (const rr of resp.answers) {
        if ('target' in rr.data && rr.type === DnsType.PTR) ctx.stdout(`${rr.name}\tname = ${rr.data.target}\n`);
        else if ('address' in rr.data) ctx.stdout(`Name:\t${rr.name}\nAddress: ${rr.data.address}\n`);
        else ctx.stdout(`${rr.name}\t${dnsTypeName(rr.type).toLowerCase()} = ${rdataText(rr).replace(/\.$/, '')}\n`);
      }
      ctx.stdout('\n');
      return 0;
    }
    lastErr = resp.flags.rcode === DnsRcode.NOERROR ? 'NODATA' : dnsRcodeName(resp.flags.rcode);
    if (reverse) break;
  }
  ctx.stdout(`** server can't find ${reverse ? reverseName(name) : name}: ${lastErr}\n\n`);
  return 1;
}

const DIG_VERSION = 'DiG 9.18.28-1~deb12u2-Debian';

/**
 * `dig [@SERVER] [-p PORT] [-t TYPE | TYPE] [-x ADDR] [+short] [+search] [+tcp] [+ignore] NAME`.
 * A truncated UDP answer is asked again over TCP unless +ignore, with dig's
 * `;; Truncated, retrying in TCP mode.` first.
 */
export async function dig(ctx: ExecContext): Promise<number> {
  const args = ctx.argv.slice(1);
  const rc = resolvConfOf(ctx);
  let server = rc.nameserver;
  let port = 53;
  let type: number | undefined;
  let name: string | undefined;
  let short = false;
  let search = false;
  let tcp = false;
  let ignoreTc = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const t = (DnsType as Record<string, number>)[a.toUpperCase()];
    if (a.startsWith('@')) server = a.slice(1);
    else if (a === '-p') port = Number(args[++i]);
    else if (a === '-t') {
      type = (DnsType as Record<string, number>)[(args[++i] ?? '').toUpperCase()];
      if (type === undefined) throw new UsageError(`dig: invalid type ${args[i]}`);
    } else if (a === '-x') {
      const ip = args[++i] ?? '';
      if (!isValidIpv4(ip)) throw new UsageError(`dig: '${ip}' is not a legal IPv4 address`);
      name = reverseName(ip);
      type = DnsType.PTR;
    } else if (a === '+short') short = true;
    else if (a === '+search') search = true;
    else if (a === '+nosearch') search = false;
    else if (a === '+tcp' || a === '+vc') tcp = true;
    else if (a === '+notcp' || a === '+novc') tcp = false;
    else if (a === '+ignore') ignoreTc = true;
    else if (a === '+noignore') ignoreTc = false;
    else if (a.startsWith('+')) continue; // other display options are accepted and ignored
    // As dig reads its arguments: a type mnemonic (before or after the name) is the type, anything else the name.
    else if (t !== undefined && type === undefined) type = t;
    else if (name === undefined) name = a;
    else throw new UsageError(`dig: unexpected argument '${a}'`);
  }
  if (!isValidIpv4(server)) throw new UsageError(`dig: couldn't get address for '${server}': not found`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('dig: invalid port');
  const qname = (name ?? '').replace(/\.$/, '');
  const qtype = type ?? DnsType.A;
  const candidates = search && name ? searchCandidates(name, rc) : [qname];
  let got: { resp: DnsMessage; ms: number; bytes: number; transport: 'udp' | 'tcp' } | undefined;
  for (const cand of candidates) {
    const r = await queryDns(ctx, cand, qtype, { server, port, edns: 1232, timeoutMs: 5000, attempts: 3, tcp, ignoreTc });
    if (r.truncated) ctx.stdout(';; Truncated, retrying in TCP mode.\n');
    if (!r.ok) {
      ctx.stdout(`;; communications error to ${server}#${port}: timed out\n`.repeat(3) + `\n; <<>> ${DIG_VERSION} <<>> ${args.join(' ')}\n;; global options: +cmd\n;; no servers could be reached\n`);
      return 9;
    }
    got = { resp: r.response, ms: r.ms, bytes: r.bytes, transport: r.transport };
    if (r.response.flags.rcode === DnsRcode.NOERROR && r.response.answers.length) break;
  }
  const { resp, ms, bytes, transport } = got!;
  if (short) {
    for (const rr of resp.answers) ctx.stdout(`${rdataText(rr)}\n`);
    return 0;
  }
  const f = resp.flags;
  const flagNames = (['qr', 'aa', 'tc', 'rd', 'ra', 'ad', 'cd'] as const).filter((k) => f[k]).join(' ');
  const opt = resp.additionals.find((x) => x.type === DnsType.OPT);
  const additionals = resp.additionals.filter((x) => x.type !== DnsType.OPT);
  const out: string[] = [
    '',
    `; <<>> ${DIG_VERSION} <<>> ${args.join(' ')}`,
    ';; global options: +cmd',
    ';; Got answer:',
    `;; ->>HEADER<<- opcode: QUERY, status: ${dnsRcodeName(f.rcode)}, id: ${resp.id}`,
    `;; flags: ${flagNames}; QUERY: ${resp.questions.length}, ANSWER: ${resp.answers.length}, AUTHORITY: ${resp.authorities.length}, ADDITIONAL: ${resp.additionals.length}`,
  ];
  if (f.rd && !f.ra) out.push(';; WARNING: recursion requested but not available');
  out.push('');
  if (opt) out.push(';; OPT PSEUDOSECTION:', `; EDNS: version: 0, flags:; udp: ${opt.class}`);
  out.push(';; QUESTION SECTION:', ...resp.questions.map((q) => digQuestion(q.name, q.type)), '');
  if (resp.answers.length) out.push(';; ANSWER SECTION:', ...resp.answers.map(digRecord), '');
  if (resp.authorities.length) out.push(';; AUTHORITY SECTION:', ...resp.authorities.map(digRecord), '');
  if (additionals.length) out.push(';; ADDITIONAL SECTION:', ...additionals.map(digRecord), '');
  out.push(
    `;; Query time: ${Math.round(ms)} msec`,
    `;; SERVER: ${server}#${port}(${server}) (${transport.toUpperCase()})`,
    `;; WHEN: ${imfFixdate(new Date()).replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, '$1 $3 $2 $5 UTC $4')}`,
    `;; MSG SIZE  rcvd: ${bytes}`,
    '',
    '',
  );
  ctx.stdout(out.join('\n'));
  return 0;
}

function digQuestion(name: string, type: number): string {
  return columns(`;${name}.`, ['IN', dnsTypeName(type)], [32, 40]);
}
