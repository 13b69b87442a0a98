/**
 * Cross-check of TCP against Wireshark: a pcapng (written with PcapngWriter)
 * holding the golden Linux SYN and a whole conversation our stack produced
 * on a veth (handshake with MSS and window scale, data both ways, FIN from
 * both ends, and a RST from a closed port), dissected by tshark with TCP
 * checksum validation on. Every field tshark decodes must equal what
 * `parseTcp` says; checksums must be Good; no frame may be malformed; expert
 * infos must stay below "warning", except the one "Connection reset (RST)"
 * warning of the RST we provoke on purpose, which is asserted exactly.
 *
 * tshark missing: skipped with a logged reason locally; in CI (CI=true) the
 * test runs and fails.
 */
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWireError, parseIpv4, PcapngWriter } from '../packet/index.ts';
import { parseTcp, type TcpRepr } from '../packet/tcp.ts';
import { hex } from './fixtures/packet/helpers.ts';
import { B_IP, TcpLink } from './helpers/tcp-link.ts';
import { EXPERT, TSHARK, expertInfo, flattenTsharkJson, hasTshark, runTshark, tsharkTestFor } from './helpers/tshark.ts';

const tsharkTest = tsharkTestFor('tcp-tshark');
const run = runTshark;

/** The golden Linux SYN of test/tcp-packet.test.ts, as a whole Ethernet frame. */
const LINUX_SYN_FRAME = hex`
  00 26 62 2f 47 87 00 1d 60 b3 01 84 08 00
  45 00 00 3c a8 cf 40 00 40 06 9d 6b c0 a8 01 03 3f 74 f3 61
  e5 c0 00 50 e5 94 3d aa 00 00 00 00 a0 02 16 d0 9d e2 00 00
  02 04 05 b4 04 02 08 0a 00 17 95 65 00 00 00 00 01 03 03 07
`;

interface Frame {
  ifId: number;
  bytes: Buffer;
  repr: TcpRepr;
  src: string;
  dst: string;
}

/** Runs a conversation over a TcpLink and records every frame pod A's eth0 sees, both directions. */
async function buildCapture(): Promise<{ pcap: Buffer; frames: Frame[] }> {
  const link = new TcpLink();
  const w = new PcapngWriter({ application: 'podlab tcp-tshark test' });
  const wire = w.addInterface({ name: 'linux0', description: 'a Linux host (golden SYN)' });
  const eth0 = w.addInterface({ name: 'eth0', description: 'pod A eth0 (podlab TCP)' });
  const blocks: Buffer[] = [w.header(), wire.block, eth0.block];
  const frames: Frame[] = [];
  let n = 0n;
  const add = (ifId: number, bytes: Buffer, direction?: 'in' | 'out') => {
    const ip = parseIpv4(bytes.subarray(14));
    if (isWireError(ip)) throw new Error(ip.message);
    const repr = parseTcp(ip.payload, ip.src, ip.dst);
    if (isWireError(repr)) throw new Error(repr.message);
    frames.push({ ifId, bytes: Buffer.from(bytes), repr, src: ip.src, dst: ip.dst });
    n++;
    blocks.push(w.packet(ifId, bytes, { timestampNs: 1_700_000_000_000_000_000n + n * 1_000_000n, direction }));
  };
  add(wire.id, LINUX_SYN_FRAME);
  link.ethA.taps.add((f, dir) => add(eth0.id, f, dir));

  // An echo conversation: 5000 bytes each way, then FINs from both ends.
  link.tcpB.listen(80, {}, (s) => s.on('data', (d) => s.write(d)));
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  const payload = Buffer.alloc(5000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
  let got = 0;
  c.on('data', (d) => (got += d.length));
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  c.write(payload);
  await link.until(() => got === payload.length, 1000, 1);
  c.end();
  await link.until(() => c.state === 'TIME-WAIT' && link.tcpB.connections().length === 0, 1000, 1);
  // A closed port: SYN, then RST/ACK.
  const refused = link.tcpA.connect({ host: B_IP, port: 81 });
  refused.on('error', () => {});
  await link.until(() => refused.destroyed, 100, 1);
  return { pcap: Buffer.concat(blocks), frames };
}


/** What tshark must show for a segment, derived from our parse of it. */
function expected(f: Frame): Record<string, string | undefined> {
  const r = f.repr;
  const bits =
    (r.flags.fin ? 1 : 0) | (r.flags.syn ? 2 : 0) | (r.flags.rst ? 4 : 0) | (r.flags.psh ? 8 : 0) | (r.flags.ack ? 16 : 0) | (r.flags.urg ? 32 : 0) | (r.flags.ece ? 64 : 0) | (r.flags.cwr ? 128 : 0);
  return {
    'ip.src': f.src,
    'ip.dst': f.dst,
    'tcp.srcport': String(r.srcPort),
    'tcp.dstport': String(r.dstPort),
    'tcp.seq_raw': String(r.seq),
    'tcp.ack_raw': String(r.ack),
    'tcp.flags': `0x${bits.toString(16).padStart(4, '0')}`,
    'tcp.flags.syn': r.flags.syn ? '1' : '0',
    'tcp.flags.fin': r.flags.fin ? '1' : '0',
    'tcp.flags.reset': r.flags.rst ? '1' : '0',
    'tcp.flags.ack': r.flags.ack ? '1' : '0',
    'tcp.flags.push': r.flags.psh ? '1' : '0',
    'tcp.window_size_value': String(r.window),
    'tcp.urgent_pointer': String(r.urgent),
    'tcp.hdr_len': String((f.bytes[14 + 20 + 12] >> 4) * 4),
    'tcp.len': String(r.payload.length),
    'tcp.checksum.status': '1',
    'tcp.options.mss_val': r.options.mss === undefined ? undefined : String(r.options.mss),
    'tcp.options.wscale.shift': r.options.windowScale === undefined ? undefined : String(r.options.windowScale),
    'tcp.options.timestamp.tsval': r.options.timestamp ? String(r.options.timestamp.value) : undefined,
    'tcp.options.timestamp.tsecr': r.options.timestamp ? String(r.options.timestamp.echo) : undefined,
  };
}

const COMMON = ['-n', '-o', 'tcp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.relative_sequence_numbers:TRUE'];

async function withCapture(t: ExecutionContext, fn: (file: string, frames: Frame[]) => Promise<void>): Promise<void> {
  if (!hasTshark) return void t.fail(`CI=true but ${TSHARK} is missing`);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-tcp-tshark-'));
  try {
    const { pcap, frames } = await buildCapture();
    const file = join(dir, 'tcp.pcapng');
    writeFileSync(file, pcap);
    if (process.env.PODLAB_PCAP_OUT) writeFileSync(process.env.PODLAB_PCAP_OUT, pcap);
    await fn(file, frames);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

tsharkTest('tshark decodes every TCP field as parseTcp does, checksums Good (golden Linux SYN + a podlab conversation)', async (t) => {
  await withCapture(t, async (file, frames) => {
    t.log((await run(['--version'])).split('\n')[0]);
    const json = JSON.parse(await run(['-r', file, ...COMMON, '-T', 'json', '--no-duplicate-keys'])) as { _source: { layers: Record<string, unknown> } }[];
    t.is(json.length, frames.length);
    t.true(frames.length >= 15, `${frames.length} frames`);
    const kinds = new Set(frames.map((f) => `${f.repr.flags.syn ? 'S' : ''}${f.repr.flags.fin ? 'F' : ''}${f.repr.flags.rst ? 'R' : ''}${f.repr.payload.length ? 'D' : ''}`));
    for (const k of ['S', 'D', 'F', 'R']) t.true([...kinds].some((x) => x.includes(k)), `the capture has a ${k} segment`);
    json.forEach((pkt, i) => {
      const fields = flattenTsharkJson(pkt._source.layers);
      const f = frames[i];
      t.is((pkt._source.layers.frame as Record<string, string>)['frame.protocols'].startsWith('eth:ethertype:ip:tcp'), true, `frame ${i + 1} is TCP`);
      t.false(fields.has('_ws.malformed'), `frame ${i + 1} is malformed`);
      for (const [name, want] of Object.entries(expected(f))) {
        const got = fields.get(name)?.[0];
        t.is(got, want, `frame ${i + 1}: ${name}`);
      }
      t.is(fields.has('tcp.options.sack_perm'), !!f.repr.options.sackPermitted, `frame ${i + 1}: SACK-permitted`);
    });
    // Our SYN: MSS 1460 (1500 - 40) and window scale 3, nothing else.
    const ourSyn = frames.findIndex((f) => f.ifId === 1 && f.repr.flags.syn && !f.repr.flags.ack);
    const synFields = flattenTsharkJson(json[ourSyn]._source.layers);
    t.deepEqual(synFields.get('tcp.option_kind'), ['2', '1', '3']);
  });
});

tsharkTest('tshark: no malformed frames, no expert errors, warnings only for the provoked RST', async (t) => {
  await withCapture(t, async (file, frames) => {
    const seen = await expertInfo(file, COMMON);
    t.is(seen.length, frames.length);
    const warnings: string[] = [];
    const notes: string[] = [];
    for (const f of seen) {
      t.false(f.malformed, `frame ${f.frame}: malformed`);
      for (const i of f.infos) {
        t.true(i.severity < EXPERT.error, `frame ${f.frame}: expert error: ${i.message}`);
        if (i.severity >= EXPERT.warn) warnings.push(`frame ${f.frame}: ${i.message}`);
        else if (i.severity >= EXPERT.note) notes.push(`frame ${f.frame}: ${i.message}`);
      }
    }
    const rstFrame = frames.findIndex((f) => f.repr.flags.rst) + 1;
    t.deepEqual(warnings, [`frame ${rstFrame}: Connection reset (RST)`]);
    t.log(notes.length ? `notes: ${notes.join('; ')}` : 'no notes');
    // The only notes: the two FINs. No retransmission, duplicate ACK, out-of-order, zero window...
    const fins = frames.flatMap((f, i) => (f.repr.flags.fin ? [i + 1] : []));
    t.deepEqual(notes, [`frame ${fins[0]}: This frame initiates the connection closing`, `frame ${fins[1]}: This frame undergoes the connection closing`]);
  });
});
