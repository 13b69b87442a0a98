/**
 * A subset of pcap-filter(7) for `podlab capture -f`, compiled to a predicate
 * over an Ethernet frame (the outer headers only, as libpcap does):
 *
 *   protocols   ip, arp, icmp, udp, tcp
 *   hosts       [src|dst] host A.B.C.D      (also a bare address)
 *   networks    [src|dst] net A.B.C.D/N
 *   ports       [src|dst] port N            (udp or tcp; `udp port 53` = udp and port 53)
 *   ethernet    ether [src|dst] host MAC
 *   logic       and (&&), or (||), not (!), parentheses
 *
 * Anything else is an error naming the token and its position.
 */
import { ipv4ToInt, isValidIpv4, isValidMac, readMac } from '../../packet/addr.ts';
import { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import { isWireError } from '../../packet/errors.ts';
import { Cidr } from '../../packet/cidr.ts';

export type FramePredicate = (frame: Buffer) => boolean;

/** A filter the parser could not read: the message names the token and its position. */
export class FilterError extends Error {
  override name = 'FilterError';
}

export const FILTER_HELP =
  'supported pcap-filter subset: ip | arp | icmp | udp | tcp, [src|dst] host ADDR, [src|dst] net CIDR, [udp|tcp] [src|dst] port N, ether [src|dst] host MAC, and/or/not, ( )';

interface Fields {
  type: number;
  src: number;
  dst: number;
  proto: number;
  sport: number;
  dport: number;
  macSrc: string;
  macDst: string;
}

/** Reads the fields filters look at; ports are -1 when absent (non-first fragments too). */
function fields(f: Buffer): Fields | null {
  if (f.length < 14) return null;
  const type = f.readUInt16BE(12);
  const out: Fields = { type, src: -1, dst: -1, proto: -1, sport: -1, dport: -1, macSrc: readMac(f, 6), macDst: readMac(f, 0) };
  if (type === 0x0806 && f.length >= 42) {
    out.src = f.readUInt32BE(28);
    out.dst = f.readUInt32BE(38);
  }
  if (type !== 0x0800) return out;
  // Lenient as tcpdump is: a header that is all there is enough (the total length may lie).
  const ip = Ipv4Packet.quoted(f.subarray(14));
  if (isWireError(ip)) return out;
  out.proto = ip.protocol;
  out.src = ip.srcInt;
  out.dst = ip.dstInt;
  out.sport = ip.srcPort;
  out.dport = ip.dstPort;
  return out;
}

type Node = (x: Fields) => boolean;

/** Compiles a filter expression; an empty one matches everything. */
export function compileFilter(expr: string): FramePredicate {
  const tokens = tokenize(expr);
  if (!tokens.length) return () => true;
  let i = 0;
  let cur = 0;
  const peek = () => tokens[i]?.text;
  const fail = (msg: string): never => {
    const t = tokens[Math.min(cur, tokens.length - 1)];
    throw new FilterError(`filter '${expr}': ${msg} at position ${t ? t.pos + 1 : expr.length}; ${FILTER_HELP}`);
  };
  const take = () => {
    cur = i;
    return tokens[i++]?.text ?? fail('unexpected end of expression');
  };

  const parseOr = (): Node => {
    let left = parseAnd();
    while (peek() === 'or' || peek() === '||') {
      i++;
      const l = left;
      const r = parseAnd();
      left = (x) => l(x) || r(x);
    }
    return left;
  };
  const parseAnd = (): Node => {
    let left = parseNot();
    while (peek() === 'and' || peek() === '&&') {
      i++;
      const l = left;
      const r = parseNot();
      left = (x) => l(x) && r(x);
    }
    return left;
  };
  const parseNot = (): Node => {
    if (peek() === 'not' || peek() === '!') {
      i++;
      const n = parseNot();
      return (x) => !n(x);
    }
    return parsePrimary();
  };
  const parseAddrTest = (dir: 'src' | 'dst' | 'any'): Node => {
    const kw = take();
    if (kw === 'host') {
      const a = take();
      if (!isValidIpv4(a)) fail(`'${a}' is not an IPv4 address`);
      const n = ipv4ToInt(a);
      return (x) => (dir !== 'dst' && x.src === n) || (dir !== 'src' && x.dst === n);
    }
    if (kw === 'net') {
      const c = take();
      const cidr = Cidr.tryParse(c);
      if (!cidr) return fail(`'${c}' is not a CIDR like 10.244.1.0/24`);
      const inNet = (v: number) => v >= 0 && cidr.contains(v);
      return (x) => (dir !== 'dst' && inNet(x.src)) || (dir !== 'src' && inNet(x.dst));
    }
    if (kw === 'port') return portTest(dir, -1);
    return fail(`expected host, net or port after '${dir}', got '${kw}'`);
  };
  const portTest = (dir: 'src' | 'dst' | 'any', proto: number): Node => {
    const p = take();
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`'${p}' is not a port number`);
    return (x) => (proto < 0 || x.proto === proto) && ((dir !== 'dst' && x.sport === n) || (dir !== 'src' && x.dport === n));
  };
  const parsePrimary = (): Node => {
    const t = take();
    switch (t) {
      case '(': {
        const n = parseOr();
        if (take() !== ')') fail("missing ')'");
        return n;
      }
      case 'ip':
        return (x) => x.type === 0x0800;
      case 'arp':
        return (x) => x.type === 0x0806;
      case 'icmp':
        return (x) => x.proto === 1;
      case 'udp':
      case 'tcp': {
        const proto = t === 'udp' ? 17 : 6;
        const dir = peek() === 'src' || peek() === 'dst' ? (take() as 'src' | 'dst') : 'any';
        if (peek() === 'port') {
          i++;
          return portTest(dir, proto);
        }
        if (dir !== 'any') fail(`expected 'port' after '${t} ${dir}'`);
        return (x) => x.proto === proto;
      }
      case 'src':
      case 'dst':
        return parseAddrTest(t);
      case 'host':
      case 'net':
      case 'port':
        i--;
        return parseAddrTest('any');
      case 'ether': {
        const dir = peek() === 'src' || peek() === 'dst' ? (take() as 'src' | 'dst') : 'any';
        if (take() !== 'host') fail("expected 'host' after 'ether'");
        const mac = take().toLowerCase();
        if (!isValidMac(mac)) fail(`'${mac}' is not a MAC address`);
        return (x) => (dir !== 'dst' && x.macSrc === mac) || (dir !== 'src' && x.macDst === mac);
      }
      default:
        if (isValidIpv4(t)) {
          i--;
          tokens.splice(i, 0, { text: 'host', pos: tokens[i].pos });
          return parseAddrTest('any');
        }
        return fail(`unknown or unsupported term '${t}'`);
    }
  };

  const root = parseOr();
  if (i < tokens.length) {
    cur = i;
    fail(`unexpected '${tokens[i].text}'`);
  }
  return (frame) => {
    const f = fields(frame);
    return f !== null && root(f);
  };
}

function tokenize(expr: string): { text: string; pos: number }[] {
  const out: { text: string; pos: number }[] = [];
  const re = /\s*(\(|\)|&&|\|\||!|[^\s()!]+)/y;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  while (re.lastIndex < expr.length && (m = re.exec(expr))) {
    if (!m[1]) break;
    out.push({ text: m[1].toLowerCase(), pos: m.index + m[0].length - m[1].length });
  }
  return out;
}
