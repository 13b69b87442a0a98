/**
 * Cross-check against Wireshark: write frames built by our serializers into a
 * pcapng with PcapngWriter, let tshark dissect it, and require that
 *  - tshark decodes every field the way our Repr says (addresses, ports, TTL,
 *    id, flags, VNI, inner headers, ICMP quotes, reassembled fragments),
 *  - IPv4, UDP and ICMP checksums are "Good" with validation enabled,
 *  - the interface names/descriptions, directions and comments of our
 *    IDB/EPB blocks show up,
 *  - there are no malformed packets and no expert infos of severity warning
 *    or error.
 *
 * Severity policy: Wireshark's expert levels are comment < chat < note <
 * warn < error. Warn ("unusual, possibly a problem", e.g. bad checksum, no
 * response to an echo request) and error (malformed, dissector exception)
 * fail the test. Comment (our own opb_comment), chat (normal workflow, e.g.
 * TCP window updates) and note (notable but legitimate, e.g. a duplicate IP
 * id) are allowed, but the notes seen are listed and must be ones we expect.
 *
 * tshark missing: skipped with a logged reason locally; in CI (CI=true) the
 * test runs and fails.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ARP_REPLY,
  ARP_REQUEST,
  ETHERTYPE_IPV4,
  ICMP_TIMXCEED_INTRANS,
  ICMP_UNREACH_NEEDFRAG,
  ICMP_UNREACH_PORT,
  ETHERTYPE_ARP,
  IPPROTO_ICMP,
  IPPROTO_UDP,
  PcapngWriter,
  VXLAN_PORT_LINUX,
  isWireError,
  parseArp,
  parseEthernet,
  parseIcmp,
  parseIpv4,
  parseUdp,
  parseVxlan,
  buildArpFrame,
  buildIcmpEchoFrame,
  buildIpv4Frame,
  buildUdpFrame,
  buildVxlanFrame,
  fragmentIpv4,
  icmpErrorQuote,
  ipv4Repr,
  serializeEthernet,
  serializeIcmp,
  serializeIpv4,
  serializeUdp,
} from '../packet/index.ts';
import { ramp } from './fixtures/packet/helpers.ts';
import { EXPERT, TSHARK, expertInfo, flattenTsharkJson, hasTshark, runTshark, tsharkTestFor } from './helpers/tshark.ts';

const tsharkTest = tsharkTestFor('packet-tshark');
const run = runTshark;

// ---------------------------------------------------------------------------
// The capture
// ---------------------------------------------------------------------------

const NODE_A = { mac: '02:42:c0:00:02:01', ip: '192.0.2.1' };
const NODE_B = { mac: '02:42:c0:00:02:02', ip: '192.0.2.2' };
const POD_1 = { mac: '0a:58:0a:f4:01:05', ip: '10.244.1.5' };
const POD_2 = { mac: '0a:58:0a:f4:02:07', ip: '10.244.2.7' };
const GW_1 = { mac: '0a:58:0a:f4:01:01', ip: '10.244.1.1' };

interface Expect {
  /** What this frame is, for messages. */
  what: string;
  ifName: string;
  direction?: 'in' | 'out';
  comment?: string;
  /** tshark field -> expected value(s), compared as strings; arrays for repeated fields (outer, inner). */
  fields: Record<string, string | string[]>;
  /** frame.protocols, as tshark reports it. */
  protocols: string;
}

interface Built {
  pcap: Buffer;
  expects: Expect[];
  frames: Buffer[];
}

function buildCapture(): Built {
  const w = new PcapngWriter({ application: 'podlab packet-tshark test' });
  const eth0 = w.addInterface({ name: 'eth0', description: 'node-a uplink (VXLAN underlay)' });
  const cni0 = w.addInterface({ name: 'cni0', description: 'node-a pod bridge' });
  const ifNames = ['eth0', 'cni0'];
  const blocks: Buffer[] = [w.header(), eth0.block, cni0.block];
  const expects: Expect[] = [];
  const frames: Buffer[] = [];
  let ts = 1_700_000_000_000_000_000n;
  const add = (ifId: number, frame: Buffer, e: Omit<Expect, 'ifName'>): void => {
    ts += 1_000_123n; // ~1 ms apart, with sub-µs digits to exercise if_tsresol = 9
    blocks.push(w.packet(ifId, frame, { timestampNs: ts, direction: e.direction, comment: e.comment }));
    expects.push({ ...e, ifName: ifNames[ifId] });
    frames.push(frame);
  };

  // 1-2: ARP request and reply on the pod bridge.
  add(cni0.id, buildArpFrame({ op: ARP_REQUEST, senderMac: POD_1.mac, senderIp: POD_1.ip, targetIp: GW_1.ip }), {
    what: 'ARP request',
    direction: 'out',
    comment: 'who-has gateway',
    protocols: 'eth:ethertype:arp',
    fields: {
      'eth.dst': 'ff:ff:ff:ff:ff:ff',
      'eth.src': POD_1.mac,
      'arp.opcode': '1',
      'arp.hw.type': '1',
      'arp.proto.type': '0x0800',
      'arp.src.hw_mac': POD_1.mac,
      'arp.src.proto_ipv4': POD_1.ip,
      'arp.dst.hw_mac': '00:00:00:00:00:00',
      'arp.dst.proto_ipv4': GW_1.ip,
      'eth.padding': '00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00',
    },
  });
  add(cni0.id, buildArpFrame({ op: ARP_REPLY, senderMac: GW_1.mac, senderIp: GW_1.ip, targetMac: POD_1.mac, targetIp: POD_1.ip }), {
    what: 'ARP reply',
    direction: 'in',
    protocols: 'eth:ethertype:arp',
    fields: { 'eth.dst': POD_1.mac, 'arp.opcode': '2', 'arp.src.hw_mac': GW_1.mac, 'arp.src.proto_ipv4': GW_1.ip, 'arp.dst.hw_mac': POD_1.mac, 'arp.dst.proto_ipv4': POD_1.ip },
  });

  // 3-4: ICMP echo request and reply (Linux-like 56-byte payload).
  const pingData = Buffer.concat([Buffer.alloc(16, 0x5a), ramp(0x10, 40)]);
  const echoAddrs = { srcMac: POD_1.mac, dstMac: GW_1.mac, srcIp: POD_1.ip, dstIp: POD_2.ip };
  add(cni0.id, buildIcmpEchoFrame({ ...echoAddrs, id: 0x1d2c, echoId: 0x4242, seq: 7, data: pingData }), {
    what: 'ICMP echo request',
    direction: 'out',
    protocols: 'eth:ethertype:ip:icmp:data',
    fields: {
      'ip.src': POD_1.ip,
      'ip.dst': POD_2.ip,
      'ip.ttl': '64',
      'ip.id': '0x1d2c',
      'ip.flags.df': '1',
      'ip.flags.mf': '0',
      'ip.len': '84',
      'ip.checksum.status': '1',
      'icmp.type': '8',
      'icmp.code': '0',
      'icmp.ident': '16962',
      'icmp.seq': '7',
      'icmp.checksum.status': '1',
      'data.len': '56',
    },
  });
  add(
    cni0.id,
    buildIcmpEchoFrame({ srcMac: GW_1.mac, dstMac: POD_1.mac, srcIp: POD_2.ip, dstIp: POD_1.ip, id: 0x7e01, ttl: 62, dontFragment: false, reply: true, echoId: 0x4242, seq: 7, data: pingData }),
    {
      what: 'ICMP echo reply',
      direction: 'in',
      protocols: 'eth:ethertype:ip:icmp:data',
      fields: { 'ip.src': POD_2.ip, 'ip.ttl': '62', 'ip.flags.df': '0', 'icmp.type': '0', 'icmp.ident': '16962', 'icmp.seq': '7', 'icmp.resp_to': '3', 'icmp.checksum.status': '1' },
    },
  );

  // 5: ICMP frag-needed (next-hop MTU 1450) quoting a 1500-byte DF UDP datagram: 548 quoted bytes.
  const bigUdp = serializeIpv4(
    ipv4Repr(POD_1.ip, '198.51.100.9', IPPROTO_UDP, serializeUdp({ srcPort: 40000, dstPort: 443, payload: ramp(0, 1472) }, POD_1.ip, '198.51.100.9'), { id: 0x0abc }),
  );
  const fragNeeded = serializeIcmp({ kind: 'dest-unreachable', code: ICMP_UNREACH_NEEDFRAG, nextHopMtu: 1450, original: icmpErrorQuote(bigUdp) });
  add(cni0.id, buildIpv4Frame({ srcMac: GW_1.mac, dstMac: POD_1.mac, srcIp: GW_1.ip, dstIp: POD_1.ip }, IPPROTO_ICMP, fragNeeded, { id: 0x0001, dscp: 48, dontFragment: false }), {
    what: 'ICMP frag needed',
    direction: 'in',
    protocols: 'eth:ethertype:ip:icmp:ip:udp:data',
    fields: {
      'ip.src': [GW_1.ip, POD_1.ip],
      'ip.dst': [POD_1.ip, '198.51.100.9'],
      'ip.len': ['576', '1500'],
      'ip.dsfield.dscp': ['48', '0'],
      'icmp.type': '3',
      'icmp.code': '4',
      'icmp.mtu': '1450',
      'icmp.checksum.status': '1',
      'udp.srcport': '40000',
      'udp.dstport': '443',
      'udp.length': '1480',
    },
  });

  // 6: ICMP time exceeded quoting an echo request that arrived with TTL 1.
  const dying = serializeIpv4(ipv4Repr(POD_1.ip, '198.51.100.9', IPPROTO_ICMP, serializeIcmp({ kind: 'echo-request', id: 9, seq: 1, data: pingData }), { ttl: 1, id: 0x0bad }));
  const timeExceeded = serializeIcmp({ kind: 'time-exceeded', code: ICMP_TIMXCEED_INTRANS, original: icmpErrorQuote(dying) });
  add(cni0.id, buildIpv4Frame({ srcMac: GW_1.mac, dstMac: POD_1.mac, srcIp: GW_1.ip, dstIp: POD_1.ip }, IPPROTO_ICMP, timeExceeded, { id: 0x0002, dscp: 48, dontFragment: false }), {
    what: 'ICMP time exceeded',
    direction: 'in',
    protocols: 'eth:ethertype:ip:icmp:ip:icmp:data',
    fields: { 'icmp.type': ['11', '8'], 'icmp.code': ['0', '0'], 'ip.ttl': ['64', '1'], 'ip.id': ['0x0002', '0x0bad'], 'ip.dst': [POD_1.ip, '198.51.100.9'] },
  });

  // 7-8: a UDP datagram and the port unreachable it provokes.
  const udpFrame = buildUdpFrame({ srcMac: POD_1.mac, dstMac: GW_1.mac, srcIp: POD_1.ip, dstIp: POD_2.ip, id: 0x3333, srcPort: 53124, dstPort: 9999, payload: Buffer.from('hello podlab') });
  add(cni0.id, udpFrame, {
    what: 'UDP',
    direction: 'out',
    protocols: 'eth:ethertype:ip:udp:data',
    fields: { 'udp.srcport': '53124', 'udp.dstport': '9999', 'udp.length': '20', 'udp.checksum.status': '1', 'data.data': Buffer.from('hello podlab').toString('hex').replace(/(..)(?!$)/g, '$1:'), 'ip.proto': '17' },
  });
  const portUnreach = serializeIcmp({ kind: 'dest-unreachable', code: ICMP_UNREACH_PORT, original: icmpErrorQuote(udpFrame.subarray(14)) });
  add(cni0.id, buildIpv4Frame({ srcMac: GW_1.mac, dstMac: POD_1.mac, srcIp: POD_2.ip, dstIp: POD_1.ip }, IPPROTO_ICMP, portUnreach, { id: 0x0003, dscp: 48, dontFragment: false }), {
    what: 'ICMP port unreachable',
    direction: 'in',
    protocols: 'eth:ethertype:ip:icmp:ip:udp:data',
    fields: { 'icmp.type': '3', 'icmp.code': '3', 'udp.srcport': '53124', 'udp.dstport': '9999', 'icmp.checksum.status': '1' },
  });

  // 9: the pod ping, VXLAN-encapsulated by node A towards node B (VNI 1, port 8472).
  const inner = serializeEthernet(
    {
      dst: '0a:58:0a:f4:02:00',
      src: '0a:58:0a:f4:01:00',
      etherType: ETHERTYPE_IPV4,
      payload: serializeIpv4(ipv4Repr(POD_1.ip, POD_2.ip, IPPROTO_ICMP, serializeIcmp({ kind: 'echo-request', id: 0x4242, seq: 8, data: pingData }), { ttl: 63, id: 0x1d2d })),
    },
    { pad: false },
  );
  add(eth0.id, buildVxlanFrame({ srcMac: NODE_A.mac, dstMac: NODE_B.mac, srcIp: NODE_A.ip, dstIp: NODE_B.ip, id: 0x4d2, srcPort: 47011, vni: 1, inner }), {
    what: 'VXLAN',
    direction: 'out',
    comment: 'pod 10.244.1.5 -> 10.244.2.7 via VNI 1',
    protocols: 'eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data',
    fields: {
      'eth.src': [NODE_A.mac, '0a:58:0a:f4:01:00'],
      'eth.dst': [NODE_B.mac, '0a:58:0a:f4:02:00'],
      'ip.src': [NODE_A.ip, POD_1.ip],
      'ip.dst': [NODE_B.ip, POD_2.ip],
      'ip.ttl': ['64', '63'],
      'ip.id': ['0x04d2', '0x1d2d'],
      'ip.flags.df': ['0', '1'],
      'ip.checksum.status': ['1', '1'],
      'udp.srcport': '47011',
      'udp.dstport': '8472',
      'udp.length': '114',
      'udp.checksum.status': '1',
      'vxlan.flags': '0x0800',
      'vxlan.flag_i': '1',
      'vxlan.flags_reserved': '0x0000',
      'vxlan.reserved8': '0',
      'vxlan.vni': '1',
      'icmp.type': '8',
      'icmp.seq': '8',
      'icmp.checksum.status': '1',
    },
  });

  // 10-12: a 3000-byte UDP datagram fragmented at MTU 1500 (tshark reassembles it).
  const big = ipv4Repr(NODE_A.ip, NODE_B.ip, IPPROTO_UDP, serializeUdp({ srcPort: 50000, dstPort: 50001, payload: ramp(3, 2972) }, NODE_A.ip, NODE_B.ip), { id: 0x2222, dontFragment: false });
  const frags = fragmentIpv4(big, 1500);
  frags.forEach((f, i) => {
    const last = i === frags.length - 1;
    add(eth0.id, serializeEthernet({ dst: NODE_B.mac, src: NODE_A.mac, etherType: ETHERTYPE_IPV4, payload: serializeIpv4(f) }), {
      what: `fragment ${i}`,
      protocols: last ? 'eth:ethertype:ip:udp:data' : 'eth:ethertype:ip:data',
      fields: {
        'ip.id': '0x2222',
        'ip.flags.mf': last ? '0' : '1',
        'ip.frag_offset': String(f.fragmentOffset / 8), // the field value is in 8-byte units
        'ip.len': String(20 + f.payload.length),
        'ip.checksum.status': '1',
        ...(last ? { 'ip.reassembled.length': '2980', 'ip.fragment.count': '3', 'udp.length': '2980', 'udp.checksum.status': '1', 'udp.dstport': '50001' } : {}),
      },
    });
  });

  return { pcap: Buffer.concat(blocks), expects, frames };
}

// ---------------------------------------------------------------------------
// tshark
// ---------------------------------------------------------------------------

const COMMON = ['-n', '-d', 'udp.port==8472,vxlan', '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE'];

type Layers = Record<string, unknown>;


/**
 * Our own dissection of `frame` with the packet/ parsers, as tshark field
 * name -> values in the order tshark lists them (outer layer first, ICMP
 * quotes after their ICMP header). Every value here must match tshark's.
 */
function ourFields(frame: Buffer): Map<string, string[]> {
  const m = new Map<string, string[]>();
  const put = (k: string, v: string | number): void => {
    const list = m.get(k) ?? [];
    list.push(String(v));
    m.set(k, list);
  };
  const hex4 = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;
  const fail = (what: string): never => {
    throw new Error(`our parser rejected our own ${what}`);
  };

  const eth = (b: Buffer): void => {
    const e = parseEthernet(b);
    if (isWireError(e)) return fail(`Ethernet frame: ${e.message}`);
    put('eth.dst', e.dst);
    put('eth.src', e.src);
    put('eth.type', hex4(e.etherType));
    if (e.etherType === ETHERTYPE_ARP) arp(e.payload);
    else if (e.etherType === ETHERTYPE_IPV4) ip(e.payload, false);
  };
  const arp = (b: Buffer): void => {
    const a = parseArp(b);
    if (isWireError(a)) return fail(`ARP: ${a.message}`);
    put('arp.opcode', a.op);
    put('arp.src.hw_mac', a.senderMac);
    put('arp.src.proto_ipv4', a.senderIp);
    put('arp.dst.hw_mac', a.targetMac);
    put('arp.dst.proto_ipv4', a.targetIp);
  };
  const ip = (b: Buffer, quoted: boolean): void => {
    const r = parseIpv4(b);
    if (isWireError(r)) {
      if (quoted) return; // a quote cut short of its total length: checked field by field instead
      return fail(`IPv4: ${r.message}`);
    }
    put('ip.version', 4);
    put('ip.hdr_len', 20 + (r.options?.length ?? 0));
    put('ip.dsfield.dscp', r.dscp);
    put('ip.dsfield.ecn', r.ecn);
    put('ip.len', b.readUInt16BE(2));
    put('ip.id', hex4(r.id));
    put('ip.flags.rb', 0);
    put('ip.flags.df', r.dontFragment ? 1 : 0);
    put('ip.flags.mf', r.moreFragments ? 1 : 0);
    put('ip.frag_offset', r.fragmentOffset / 8); // tshark's field value is in 8-byte units
    put('ip.ttl', r.ttl);
    put('ip.proto', r.protocol);
    put('ip.checksum', hex4(b.readUInt16BE(10)));
    put('ip.src', r.src);
    put('ip.dst', r.dst);
    if (r.moreFragments || r.fragmentOffset > 0) return; // tshark dissects the reassembled datagram: checked by hand
    if (r.protocol === IPPROTO_ICMP) icmp(r.payload);
    else if (r.protocol === IPPROTO_UDP) udp(r.payload, r.src, r.dst, quoted);
  };
  const udp = (b: Buffer, src: string, dst: string, quoted: boolean): void => {
    const u = parseUdp(b, src, dst);
    if (isWireError(u)) return fail(`UDP: ${u.message}`);
    put('udp.srcport', u.srcPort);
    put('udp.dstport', u.dstPort);
    put('udp.length', 8 + u.payload.length);
    put('udp.checksum', hex4(b.readUInt16BE(6)));
    if (!quoted && u.dstPort === VXLAN_PORT_LINUX) {
      const v = parseVxlan(u.payload);
      if (isWireError(v)) return fail(`VXLAN: ${v.message}`);
      put('vxlan.flags', '0x0800'); // tshark reads the flags as 16 bits: I = 0x0800
      put('vxlan.flag_i', 1);
      put('vxlan.vni', v.vni);
      eth(v.payload);
    }
  };
  const icmp = (b: Buffer): void => {
    const c = parseIcmp(b);
    if (isWireError(c)) return fail(`ICMP: ${c.message}`);
    put('icmp.type', b[0]);
    put('icmp.code', b[1]);
    put('icmp.checksum', hex4(b.readUInt16BE(2)));
    if (c.kind === 'echo-request' || c.kind === 'echo-reply') {
      put('icmp.ident', c.id);
      put('icmp.seq', c.seq);
    } else if (c.kind === 'dest-unreachable' || c.kind === 'time-exceeded') {
      if (c.kind === 'dest-unreachable' && c.nextHopMtu !== undefined) put('icmp.mtu', c.nextHopMtu);
      ip(c.original, true);
    }
  };
  eth(frame);
  return m;
}

/** Every field of `e` appears in tshark's decoding with the expected value(s). */
function checkFields(t: import('ava').ExecutionContext, n: number, e: Expect, fields: Map<string, string[]>): void {
  for (const [name, want] of Object.entries(e.fields)) {
    const got = fields.get(name);
    const wantList = Array.isArray(want) ? want : [want];
    t.deepEqual(got?.slice(0, wantList.length), wantList, `frame ${n} (${e.what}): ${name}`);
  }
}

tsharkTest('tshark decodes our frames exactly as our Reprs say, checksums Good', async (t) => {
  if (!hasTshark) return t.fail(`CI=true but ${TSHARK} is missing`);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-tshark-'));
  const file = join(dir, 'capture.pcapng');
  try {
    const { pcap, expects, frames } = buildCapture();
    writeFileSync(file, pcap);
    // Keep a copy to open in Wireshark: PODLAB_PCAP_OUT=/tmp/x.pcapng npx ava test/packet-tshark.test.ts
    if (process.env.PODLAB_PCAP_OUT) writeFileSync(process.env.PODLAB_PCAP_OUT, pcap);
    const version = (await run(['--version'])).split('\n')[0];
    t.log(version);

    const json = JSON.parse(await run(['-r', file, ...COMMON, '-T', 'json', '--no-duplicate-keys'])) as { _source: { layers: Layers } }[];
    t.is(json.length, expects.length, 'one dissection per frame');
    let compared = 0;
    json.forEach((pkt, i) => {
      const n = i + 1;
      const e = expects[i];
      const layers = pkt._source.layers;
      const fields = flattenTsharkJson(layers);
      const frame = layers.frame as Record<string, string>;
      t.is(frame['frame.protocols'], e.protocols, `frame ${n} (${e.what}): protocols`);
      t.deepEqual(fields.get('frame.interface_name'), [e.ifName], `frame ${n}: interface name from our IDB`);
      t.deepEqual(
        fields.get('frame.interface_description'),
        [e.ifName === 'eth0' ? 'node-a uplink (VXLAN underlay)' : 'node-a pod bridge'],
        `frame ${n}: interface description from our IDB`,
      );
      if (e.comment !== undefined) t.deepEqual(fields.get('frame.comment'), [e.comment], `frame ${n}: opb_comment`);
      if (e.direction !== undefined) {
        const dir = Number(fields.get('frame.packet_flags_direction')?.[0]); // 1 inbound, 2 outbound
        t.is(dir, e.direction === 'in' ? 1 : 2, `frame ${n}: epb_flags direction`);
      }
      t.false(fields.has('_ws.malformed'), `frame ${n} (${e.what}) is malformed`);
      for (const [k, v] of fields) {
        // Every checksum Wireshark checked must be Good (1); 2 = unverified is fine only where no check exists.
        if (k.endsWith('.checksum.status')) for (const s of v) t.not(s, '0', `frame ${n} (${e.what}): ${k} is Bad`);
      }
      checkFields(t, n, e, fields);
      // And, generically, every field our parsers decode from the same bytes.
      for (const [name, ours] of ourFields(frames[i])) {
        t.deepEqual(fields.get(name)?.slice(0, ours.length), ours, `frame ${n} (${e.what}): ${name} as tshark sees it vs our parse`);
        compared += ours.length;
      }
    });
    t.log(`${compared} field values of our own parse matched tshark's`);
    t.true(compared > 250);
    // Nanosecond timestamps from if_tsresol = 9 survive.
    t.is((json[0]._source.layers.frame as Record<string, string>)['frame.time_epoch'], '1700000000.001000123');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

tsharkTest('tshark: zero malformed packets and no expert info of severity warning or error', async (t) => {
  if (!hasTshark) return t.fail(`CI=true but ${TSHARK} is missing`);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-tshark-'));
  const file = join(dir, 'capture.pcapng');
  try {
    const { pcap, expects } = buildCapture();
    writeFileSync(file, pcap);
    const frames = await expertInfo(file, COMMON);
    t.is(frames.length, expects.length);
    const notes: string[] = [];
    for (const f of frames) {
      t.false(f.malformed, `frame ${f.frame}: malformed`);
      for (const i of f.infos) {
        t.true(i.severity < EXPERT.warn, `frame ${f.frame}: expert severity 0x${i.severity.toString(16)}: ${i.message}`);
        if (i.severity >= EXPERT.chat) notes.push(`frame ${f.frame}: ${i.message}`);
      }
    }
    t.log(notes.length ? `chat/note expert infos: ${notes.join('; ')}` : 'no chat/note expert infos');
    // The only note we expect: the TTL-1 datagram quoted by the time-exceeded error (frame 6).
    t.deepEqual(notes, ['frame 6: "Time To Live" only 1']);
    // The summary view agrees: no Errors / Warns sections at all.
    const summary = await run(['-r', file, ...COMMON, '-q', '-z', 'expert']);
    t.notRegex(summary, /^\s*(Errors|Warns)\s*\(/m, summary);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
