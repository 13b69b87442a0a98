/**
 * calico-node's BIRD on a kernel node (`--backend bgp`): a real BIRD 2 runs in
 * the node's namespace, peers with podlab's speakers over TCP 179, announces
 * the node's podCIDR and installs what it learns into the namespace's kernel
 * table as `<podCIDR> via <node IP> dev eth0 proto bird`.
 *
 * The configuration follows Calico's bird.cfg template in what matters on the
 * wire and in the table: AS 64512 (or the BGPConfiguration's), router id =
 * node IP, the pod block announced from a static blackhole route that is not
 * itself exported to the kernel, one `protocol bgp` per peer with `passive on`
 * towards peers whose IP compares greater as a string (the same rule as
 * podlab's speakers, bgp/speaker.ts calicoMeshPassive), `next hop self`, and
 * `direct` (the peers share eth0's subnet).
 *
 * Import filters are ./filters.ts's decisions rendered as BIRD filters, one
 * per peer (`podlab_import_<protocol>`): from a node only its own block inside
 * the IP pools (the announcing node is `bgp_originator_id` when reflected),
 * from a BGPPeer nothing inside the pools, then its BGPFilters' importV4 rules
 * in order (Calico's `bgp_<filter>_importFilterV4` functions inlined), no
 * default route unless a rule accepts it; exportV4 rules likewise on export.
 * Every reject names its rule, and `birdc show route filtered` lists them.
 *
 * The renderer is pure; BirdProcess owns the one BIRD of a kernel node: it
 * runs in the foreground as the agent's child (`ip netns exec NS bird -f`),
 * writes its pid file into the state dir (so `podlab down` stops it even after
 * the agent was killed: common/recorded-process.ts), and is reconfigured in
 * place with `birdc configure`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { calicoMeshPassive } from '../../bgp/speaker.ts';
import type { BgpFilter, BgpFilterRule } from '../../control-plane/calico.ts';
import { ruleText, type NodeOwner } from './filters.ts';
import { systemTool } from '../../common/system-tool.ts';
import { stopRecorded } from '../../common/recorded-process.ts';

export const BIRD = process.env.PODLAB_BIRD ?? systemTool('bird') ?? 'bird';
export const BIRDC = process.env.PODLAB_BIRDC ?? systemTool('birdc') ?? 'birdc';

export interface BirdPeer {
  /** The peer's node name (the protocol's description). */
  name: string;
  ip: string;
  asn: number;
  port: number;
  /** A BGPPeer (external router) with its BGPFilters, in order; absent: a node. */
  external?: { name: string; filters: BgpFilter[] };
}

export interface BirdConfigInput {
  node: string;
  routerId: string;
  asn: number;
  podCIDR: string;
  /** The port podlab's speakers listen on (179 in netns labs); BIRD listens there too. */
  port: number;
  holdTime: number;
  peers: BirdPeer[];
  /** The cluster's IP pools. */
  pools: string[];
  /** Every node and its blocks (who may announce what). */
  owners: NodeOwner[];
}

const q = (s: string) => `"${s.replace(/["\\]/g, '')}"`;
const set = (cidrs: string[]) => `[ ${cidrs.map((c) => `${c}+`).join(', ')} ]`;

function ruleCondition(r: BgpFilterRule): string {
  if (!r.cidr) return 'true';
  if (r.matchOperator === 'Equal') return `net = ${r.cidr}`;
  if (r.matchOperator === 'NotIn') return `!(net ~ ${set([r.cidr])})`;
  return `net ~ ${set([r.cidr])}`;
}

/** BGPFilter rules as BIRD statements: the first match accepts or rejects, naming its rule. */
function filterRules(filters: BgpFilter[], dir: 'importV4' | 'exportV4'): string[] {
  const out: string[] = [];
  for (const f of filters) {
    (f.spec?.[dir] ?? []).forEach((r, i) => out.push(`  if ${ruleCondition(r)} then ${r.action === 'Accept' ? 'accept' : 'reject'} ${q(ruleText(f.metadata.name, dir, i, r))};`));
  }
  return out;
}

/** The import filter of one peer (./filters.ts importVerdict, in BIRD's language). */
export function birdImportFilter(c: Pick<BirdConfigInput, 'pools' | 'owners'>, p: BirdPeer): string[] {
  const name = `podlab_import_${birdProtocolName(p.ip)}`;
  const lines = [`filter ${name} {`];
  if (p.external) {
    if (c.pools.length) lines.push(`  if net ~ ${set(c.pools)} then reject ${q("inside an IP pool: only nodes announce the cluster's addresses")};`);
    if (!p.external.filters.length) lines.push(`  reject ${q(`no BGPFilter on BGPPeer ${p.external.name}: nothing is imported`)};`);
    else {
      lines.push(...filterRules(p.external.filters, 'importV4'));
      lines.push(`  if net = 0.0.0.0/0 then reject ${q('default route: only a BGPFilter rule may accept it')};`, '  accept;');
    }
  } else {
    lines.push(`  if net = 0.0.0.0/0 then reject ${q('default route: never from a node')};`);
    lines.push(c.pools.length ? `  if !(net ~ ${set(c.pools)}) then reject ${q('outside the IP pools')};` : `  reject ${q('no IP pools')};`);
    const self = c.owners.find((o) => o.ip === p.ip);
    // Not reflected: the peer announced it itself.
    lines.push('  if !defined(bgp_originator_id) then {');
    if (self?.blocks.length) lines.push(`    if net ~ ${set(self.blocks)} then accept ${q(`${self.name}'s block`)};`);
    lines.push(`    reject ${q(`not ${self?.name ?? p.ip}'s block`)};`, '  }');
    // Reflected: the originator's block.
    for (const o of c.owners) if (o.blocks.length) lines.push(`  if bgp_originator_id = ${o.ip} && net ~ ${set(o.blocks)} then accept ${q(`${o.name}'s block`)};`);
    lines.push(`  reject ${q("not the announcing node's block")};`);
  }
  lines.push('}');
  return lines;
}

/** The export filter of one peer: our block, through a BGPPeer's exportV4 rules. */
export function birdExportFilter(p: BirdPeer): string[] {
  const rules = p.external ? filterRules(p.external.filters, 'exportV4') : [];
  return [`filter podlab_export_${birdProtocolName(p.ip)} {`, '  if proto != "podcidr" then reject;', ...rules, '  accept;', '}'];
}

/** A BIRD protocol name for a peer: Calico's `Mesh_10_250_0_11` style. */
export function birdProtocolName(ip: string): string {
  return `Mesh_${ip.replace(/\./g, '_')}`;
}

/** bird.conf for a kernel node (pure). */
export function birdConfig(c: BirdConfigInput): string {
  const lines = [
    `# podlab kernel node ${c.node}: calico-node's BIRD (written by backends/bgp/bird.ts; reloaded with birdc configure)`,
    `router id ${c.routerId};`,
    'log stderr all;',
    '',
    '# Interfaces, so next hops on eth0 resolve.',
    'protocol device { scan time 10; }',
    '',
    '# The pod block, announced as Calico announces its blocks: a blackhole route that BGP carries.',
    'protocol static podcidr {',
    '  ipv4;',
    `  route ${c.podCIDR} blackhole;`,
    '}',
    '',
    "# Learned pod blocks into the namespace's table (proto bird); our own block stays on cni0.",
    'protocol kernel {',
    '  ipv4 { import none; export where proto != "podcidr"; };',
    '  merge paths on;',
    '}',
    '',
    'template bgp podlab_mesh {',
    `  local ${c.routerId} port ${c.port} as ${c.asn};`,
    '  direct;',
    `  hold time ${c.holdTime};`,
    // A lab's peers restart on purpose: retry in seconds, not BIRD's default two minutes.
    '  connect delay time 1;',
    '  connect retry time 5;',
    '  error wait time 1, 10;',
    '  ipv4 {',
    '    import all;',
    '    export where proto = "podcidr";',
    '    next hop self;',
    '  };',
    '}',
  ];
  for (const p of [...c.peers].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))) {
    lines.push(
      '',
      ...birdImportFilter(c, p),
      ...birdExportFilter(p),
      `protocol bgp ${birdProtocolName(p.ip)} from podlab_mesh {`,
      `  description "${p.name.replace(/"/g, '')}";`,
      `  neighbor ${p.ip} port ${p.port} as ${p.asn};`,
      // Of each pair the greater IP (as a string) dials, as Calico's template says.
      ...(calicoMeshPassive(c.routerId, p.ip) ? ['  passive on;'] : []),
      `  ipv4 { import keep filtered on; import filter podlab_import_${birdProtocolName(p.ip)}; export filter podlab_export_${birdProtocolName(p.ip)}; };`,
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Where a kernel node keeps BIRD's files. */
export function birdPaths(stateDir: string, node: string): { conf: string; pid: string; ctl: string; log: string } {
  const dir = path.join(stateDir, 'nodes', node);
  const ctl = path.join(dir, 'bird.ctl');
  return {
    conf: path.join(dir, 'bird.conf'),
    pid: path.join(dir, 'bird.pid'),
    // Unix socket paths are short (108 bytes): fall back to /tmp for deep state dirs.
    ctl: Buffer.byteLength(ctl) < 100 ? ctl : path.join('/tmp', `podlab-${createHash('sha256').update(ctl).digest('hex').slice(0, 12)}-bird.ctl`),
    log: path.join(stateDir, 'logs', `${node}-bird.log`),
  };
}

export class BirdError extends Error {
  override name = 'BirdError';
}

/** Runs birdc on a control socket; resolves with its output. */
export function birdc(ctl: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(BIRDC, ['-s', ctl, ...args], { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(new BirdError(`birdc ${args.join(' ')}: ${(stderr || stdout || err.message).trim()}`)) : resolve(stdout))),
  );
}

/** Checks a configuration with `bird -p` (parse only); a BirdError with BIRD's message when it is wrong. */
export function checkBirdConfig(file: string): Promise<void> {
  return new Promise((resolve, reject) => execFile(BIRD, ['-p', '-c', file], (err, stdout, stderr) => (err ? reject(new BirdError(`bird -p -c ${file}: ${(stderr || stdout || err.message).trim()}`)) : resolve())));
}

/** The one BIRD of a kernel node. */
export class BirdProcess {
  private child?: ChildProcess;
  private current = '';
  readonly paths: ReturnType<typeof birdPaths>;

  constructor(private readonly o: { stateDir: string; node: string; netns: string }) {
    this.paths = birdPaths(o.stateDir, o.node);
  }

  /** Starts BIRD with `config`, or reconfigures the running one when the config changed. */
  async apply(config: string): Promise<void> {
    if (config === this.current && this.running) return;
    fs.writeFileSync(this.paths.conf, config);
    await checkBirdConfig(this.paths.conf);
    if (this.running) {
      const out = await birdc(this.paths.ctl, 'configure');
      if (!/Reconfigur/.test(out)) throw new BirdError(`birdc configure: ${out.trim()}`);
    } else await this.start();
    this.current = config;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  private async start(): Promise<void> {
    await stopRecordedBird(this.o.stateDir, this.o.node); // one left by a killed agent
    fs.mkdirSync(path.dirname(this.paths.log), { recursive: true });
    const fd = fs.openSync(this.paths.log, 'a');
    // ip netns exec execs BIRD: the child's pid is BIRD's own.
    const child = spawn('ip', ['netns', 'exec', this.o.netns, BIRD, '-f', '-c', this.paths.conf, '-s', this.paths.ctl, '-P', this.paths.pid], { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.child = child;
    const exited = new Promise<never>((_, reject) => child.once('exit', (code, sig) => reject(new BirdError(`BIRD exited (${code ?? sig}) at start: see ${this.paths.log}`))));
    exited.catch(() => {});
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await Promise.race([birdc(this.paths.ctl, 'show', 'status').then(() => true, () => false), exited]);
      if (ok) return;
      if (Date.now() > deadline) throw new BirdError(`BIRD did not answer on ${this.paths.ctl} within 10 s: see ${this.paths.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** `birdc show protocols`, the kernel node's `bgp summary`. */
  summary(): Promise<string> {
    return birdc(this.paths.ctl, 'show', 'protocols');
  }

  /** `birdc show route`, then `show route filtered` (with each route's attributes), the kernel node's `bgp routes`. */
  async routes(): Promise<string> {
    const [all, filtered] = await Promise.all([birdc(this.paths.ctl, 'show', 'route'), birdc(this.paths.ctl, 'show', 'route', 'filtered', 'all')]);
    return `${all}\nFiltered (received, not installed; birdc show route filtered all):\n${filtered}`;
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    fs.rmSync(this.paths.pid, { force: true });
  }
}

/** Stops the BIRD recorded for `node` (one left by a killed agent), if its pid is still that BIRD. */
export function stopRecordedBird(stateDir: string, node: string): Promise<boolean> {
  const { pid, conf } = birdPaths(stateDir, node);
  return stopRecorded(pid, conf);
}
