/**
 * `podlab capture`: streams a node's interfaces into pcapng (one Interface
 * Description Block per interface, named and described with the node), to a
 * file or live to stdout for `| wireshark -k -i -`; without -w, one line per
 * packet, as tcpdump prints.
 */
import fs from 'node:fs';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapngWriter } from '../packet/pcapng.ts';
import { describeFrame } from '../netstack/link/netdev.ts';
import { describeIpv4 } from '../netstack/trace.ts';
import { connectNode } from '../lab/node-endpoint.ts';
import { LabError, requireLab } from '../lab/lab.ts';

export interface CaptureOptions {
  node: string;
  ifaces: string[];
  all?: boolean;
  write?: string;
  count?: number;
  durationS?: number;
  filter?: string;
  signal?: AbortSignal;
  /** Where text lines and the summary go (stderr when writing pcapng to stdout). */
  log: (s: string) => void;
}

type Evt = { type: 'interfaces'; list: { name: string; description: string; link?: 'ethernet' | 'raw' }[] } | { type: 'pkt'; i: number; dir: 'in' | 'out'; ts: string; data: Uint8Array };

export async function capture(stateDir: string, o: CaptureOptions): Promise<{ captured: number; dropped: number }> {
  const rec = requireLab(stateDir);
  if (o.count !== undefined && (!Number.isInteger(o.count) || o.count < 1)) throw new LabError(`-c: must be a positive integer, got ${o.count}`);
  if (o.durationS !== undefined && !(o.durationS > 0)) throw new LabError(`--duration: must be a positive number of seconds, got ${o.durationS}`);
  const c = await connectNode(rec, o.node);
  const writer = new PcapngWriter({ application: 'podlab capture' });
  let out: NodeJS.WritableStream | null = null;
  let names: string[] = [];
  let raw: boolean[] = [];
  let id = 0;
  const stop = () => c.cancel(id);
  o.signal?.addEventListener('abort', stop, { once: true });
  const timer = o.durationS ? setTimeout(stop, o.durationS * 1000) : undefined;
  const write = (b: Buffer) => {
    if (out && !(out as { destroyed?: boolean }).destroyed) out.write(b);
  };
  try {
    return await c.call<{ captured: number; dropped: number }>(
      'capture',
      { ifaces: o.ifaces, all: o.all, filter: o.filter, count: o.count },
      undefined,
      (i) => (id = i),
      (d) => {
        const e = d as Evt;
        if (e.type === 'interfaces') {
          names = e.list.map((x) => x.name);
          raw = e.list.map((x) => x.link === 'raw');
          if (o.write) {
            out = o.write === '-' ? process.stdout : fs.createWriteStream(o.write);
            // A reader that goes away (Wireshark closed) ends the capture quietly.
            out.on('error', stop);
            write(writer.header());
            for (const x of e.list) write(writer.addInterface({ name: x.name, description: x.description, linkType: x.link === 'raw' ? LINKTYPE_RAW : LINKTYPE_ETHERNET }).block);
          } else {
            o.log(`capturing on ${o.node}: ${e.list.map((x) => x.name).join(', ')}${o.filter ? ` (filter: ${o.filter})` : ''}\n`);
          }
          return;
        }
        const data = Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength);
        if (o.write) write(writer.packet(e.i, data, { timestampNs: BigInt(e.ts), direction: e.dir }));
        else {
          const t = new Date(Number(BigInt(e.ts) / 1_000_000n)).toISOString().slice(11, 23);
          o.log(`${t} ${names[e.i]} ${e.dir === 'in' ? 'In ' : 'Out'} ${raw[e.i] ? describeIpv4(data) : describeFrame(data)}\n`);
        }
      },
    );
  } finally {
    if (timer) clearTimeout(timer);
    c.close();
    const f = out as NodeJS.WritableStream | null;
    if (f && f !== process.stdout) await new Promise<void>((r) => f.end(r));
  }
}
