/**
 * The kernel node kind's agent process (`podlab kernel-node`, root only): a
 * network namespace configured as flanneld (or calico-node with a real BIRD)
 * and the CNI bridge plugin configure a real node (./runtime.ts), kept in sync
 * from the apiserver, so the Linux kernel itself is a peer of the emulated
 * nodes (same VXLAN on UDP 8472, same Node annotations). The agent's work
 * shared with emulated nodes (registration, informers, host-local IPAM,
 * status, heartbeats, the backend's plan, BGP) is node-agent/node-core.ts.
 *
 * This file serves the CLI's control socket: `podlab exec` runs the real
 * command (`ip netns exec <pod-ns> ping ...`), `podlab node` shows the real
 * `ip route` / `ip neigh` / `bridge fdb` and BIRD's views.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { createLogger } from '../common/log.ts';
import { ApiClient } from '../control-plane/client.ts';
import { agentCredentials, type ClientCredentials } from '../control-plane/credentials.ts';
import type { BackendName, NetworkBackend } from '../backends/backend.ts';
import { DEFAULT_BACKEND, backendNamed } from '../backends/registry.ts';
import type { BgpTopology } from '../backends/bgp/bgp-backend.ts';
import { bgpView } from '../backends/bgp/views.ts';
import { ControlError, ControlServer, controlSocketPath, type CallContext } from '../node-agent/control-server.ts';
import { NodeCore } from '../node-agent/node-core.ts';
import { ipIn, ipJson } from '../hostnet/netns.ts';
import { KERNEL_POD_COMMANDS, nodeViewCommand } from './commands.ts';
import { KernelRuntime, type KernelPod } from './runtime.ts';

const log = createLogger('podlab:kernel-node');

export interface KernelNodeOptions {
  name: string;
  /** The node's network namespace (created by the lab, with eth0 on the underlay). */
  netns: string;
  /** eth0's address: InternalIP, Flannel's public-ip, the VTEP's local address. */
  ip: string;
  apiUrl: string;
  /** Token and CA for the apiserver; default: found from the state directory (control-plane/credentials.ts). */
  credentials?: ClientCredentials;
  stateDir: string;
  vxlanPort?: number;
  vni?: number;
  /** Underlay MTU; cni0 and pods get the backend's overhead less. */
  mtu?: number;
  /** The pod-network backend (backends/registry.ts); it must support kernel nodes. */
  backend?: BackendName;
  /** BGP backends: the port every node's BGP listens on, the hold time, the topology. */
  bgpPort?: number;
  bgpHoldTime?: number;
  bgpTopology?: BgpTopology;
  /** The cluster's IP pool: what BGP filters let nodes announce and keep external peers from announcing. */
  clusterCidr?: string;
  heartbeatMs?: number;
}

export class KernelNodeAgent {
  readonly name: string;
  readonly backend: NetworkBackend;
  private readonly o: Required<Omit<KernelNodeOptions, 'credentials'>> & Pick<KernelNodeOptions, 'credentials'>;
  private readonly runtime: KernelRuntime;
  private readonly core: NodeCore;
  private control?: ControlServer;

  constructor(opts: KernelNodeOptions) {
    this.o = { vxlanPort: 8472, vni: 1, mtu: 1500, heartbeatMs: 10_000, backend: DEFAULT_BACKEND, bgpPort: 179, bgpHoldTime: 9, bgpTopology: 'full-mesh', clusterCidr: '10.244.0.0/16', ...opts };
    this.name = opts.name;
    this.backend = backendNamed(this.o.backend);
    const o = this.o;
    this.runtime = new KernelRuntime({ name: o.name, netns: o.netns, ip: o.ip, stateDir: o.stateDir, backend: this.backend, vxlanPort: o.vxlanPort, vni: o.vni, mtu: o.mtu, bgp: { port: o.bgpPort, holdTime: o.bgpHoldTime, topology: o.bgpTopology, pools: [o.clusterCidr] } });
    const labels = { 'kubernetes.io/os': 'linux', 'podlab.io/kernel-node': 'true' };
    this.core = new NodeCore(
      {
        name: o.name,
        ip: o.ip,
        stateDir: o.stateDir,
        backend: this.backend,
        vni: o.vni,
        heartbeatMs: o.heartbeatMs,
        // Like flanneld's periodic lease resync: re-apply the plan if someone changed the tables.
        resyncMs: 30_000,
        kind: {
          labels: { 'kubernetes.io/hostname': o.name, ...labels },
          patchLabels: labels,
          annotations: { 'podlab.io/node-kind': 'kernel' },
          // What `kubectl get nodes -o wide` shows: this node is the host's own kernel.
          nodeInfo: { osImage: `Linux kernel (netns ${o.netns})`, kernelVersion: os.release(), containerRuntimeVersion: 'netns://ip-netns', operatingSystem: 'linux', architecture: os.arch() },
          readyMessage: 'podlab kernel node agent is posting ready status',
        },
      },
      new ApiClient(opts.apiUrl, { credentials: opts.credentials ?? agentCredentials({ stateDir: opts.stateDir, name: opts.name }) }),
      this.runtime,
      'podlab:kernel-node',
    );
  }

  get podCIDR(): string {
    return this.core.podCIDR;
  }

  get vtepMac(): string {
    return this.core.vtepMac;
  }

  /** This node's control socket (see controlSocketPath in control-server.ts). */
  get controlSocketPath(): string {
    return controlSocketPath(this.o.stateDir, this.name);
  }

  async start(): Promise<void> {
    await this.core.start({
      serve: async () => {
        this.control = new ControlServer(this.controlSocketPath);
        this.registerHandlers(this.control);
        await this.control.listen();
      },
    });
    log.info('kernel node ready', { node: this.name, netns: this.o.netns, ip: this.o.ip, podCIDR: this.podCIDR, vtepMac: this.vtepMac });
  }

  private exec(argv: Parameters<KernelRuntime['exec']>[0]): Promise<string> {
    return this.runtime.exec(argv);
  }

  // ------------------------------------------------------------ control channel (the CLI)

  private findPod(ref: string): KernelPod {
    const key = ref.includes('/') ? ref : `default/${ref}`;
    const pod = this.runtime.podMap.get(key);
    if (!pod) throw new ControlError(`pod ${key} is not on node ${this.name}`);
    return pod;
  }

  private registerHandlers(c: ControlServer): void {
    const kernelOnly = (what: string, hint: string) => () => {
      throw new ControlError(`${this.name} is a kernel node: ${what} is not available through podlab; ${hint}`);
    };
    c.handle('info', () => ({
      name: this.name,
      kind: 'kernel',
      netns: this.o.netns,
      ip: this.o.ip,
      podCIDR: this.podCIDR,
      vtepMac: this.vtepMac,
      pid: process.pid,
      pods: [...this.runtime.podMap.values()].map((p) => ({ key: p.key, ip: p.ip, veth: p.hostVeth, netns: p.netns })),
    }));
    c.handle('node.cmd', async (params) => {
      const argv = (params as { argv: string[] }).argv;
      const view = bgpView(argv, this.core.bgp, { node: this.name, backend: this.backend.name, usage: ' (birdc show protocols | show route)' });
      if (view && 'error' in view) throw new ControlError(view.error);
      if (view) return { stdout: await view.out };
      const cmd = nodeViewCommand(this.o.netns, argv);
      if (!cmd) throw new ControlError(`unsupported node command '${argv.join(' ')}': try ip route | ip neigh | ip link | ip addr | bridge fdb${this.core.bgp ? ' | bgp summary | bgp routes' : ''}`);
      return { stdout: await this.exec(cmd) };
    });
    c.handle('stats', async () => this.stats());
    c.handle('exec', async (params, ctx) => this.execInPod(params as { pod: string; argv: string[]; stdin?: boolean }, ctx));
    // A trace through a kernel node shows the emulated nodes' hops; the kernel reports none.
    c.handle('trace.start', () => ({ node: this.name }));
    c.handle('trace.collect', () => []);
    c.handle('trace.probe', kernelOnly('trace from a kernel pod', `run: podlab exec POD -- tracepath -n DEST (or ip netns exec <pod-ns> ...)`));
    const captureHint = this.backend.kernel!.captureHint(this.o.netns, { vxlanPort: this.o.vxlanPort });
    c.handle('pod.portforward', kernelOnly('kubectl port-forward', 'reach the pod from the host with ip netns exec <pod-ns> ..., or forward to a pod of an emulated node'));
    c.handle('capture.list', kernelOnly('capture', captureHint));
    c.handle('capture', kernelOnly('capture', captureHint));
    c.handle('impair.set', kernelOnly('impair', 'impair the emulated side (podlab impair NODE --peer ' + this.name + ' ...)'));
    c.handle('impair.clear', kernelOnly('impair', 'nothing to clear'));
    c.handle('stack.mtu', async (params) => {
      const { dev, mtu } = params as { dev: string; mtu: number };
      if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new ControlError(`mtu ${mtu}: must be 68-65535`);
      await ipIn(this.o.netns, 'link', 'set', 'dev', dev, 'mtu', String(mtu)).catch((e: Error) => {
        throw new ControlError(e.message);
      });
      return { dev, mtu };
    });
  }

  /** Counters from the kernel (`ip -s -j link`), in the shape `podlab node NODE stats` prints. */
  private async stats(): Promise<Record<string, unknown>> {
    type L = { ifname: string; stats64?: { rx: { bytes: number; packets: number; dropped: number; errors: number }; tx: { bytes: number; packets: number; dropped: number; errors: number } } };
    const links = await ipJson<L[]>(this.o.netns, '-s', 'link', 'show');
    const interfaces: Record<string, unknown> = {};
    for (const l of links) {
      const s = l.stats64;
      if (!s) continue;
      const drops: Record<string, number> = {};
      if (s.rx.dropped) drops['rx-dropped'] = s.rx.dropped;
      if (s.tx.dropped) drops['tx-dropped'] = s.tx.dropped;
      if (s.rx.errors) drops['rx-errors'] = s.rx.errors;
      if (s.tx.errors) drops['tx-errors'] = s.tx.errors;
      interfaces[l.ifname] = { rxPackets: s.rx.packets, rxBytes: s.rx.bytes, txPackets: s.tx.packets, txBytes: s.tx.bytes, drops };
    }
    return { node: this.name, kind: 'kernel', interfaces, ip: { drops: {} }, impairments: {}, pods: {} };
  }

  /** `podlab exec` on a kernel pod: the real program, in the pod's namespace. */
  private async execInPod(params: { pod: string; argv: string[]; stdin?: boolean }, ctx: CallContext): Promise<{ exitCode: number }> {
    const pod = this.findPod(params.pod);
    const [prog, ...rest] = params.argv;
    if (prog === 'hostname') {
      ctx.stdout(`${pod.key.split('/')[1]}\n`);
      return { exitCode: 0 };
    }
    if (!prog || !(KERNEL_POD_COMMANDS as readonly string[]).includes(prog)) {
      ctx.stderr(`exec: "${prog ?? ''}": not available in kernel pods (podlab runs these for real in the pod's namespace: ${KERNEL_POD_COMMANDS.join(', ')}, hostname)\n`);
      return { exitCode: 127 };
    }
    const child = spawn('ip', ['netns', 'exec', pod.netns, prog, ...rest], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (s: string) => ctx.stdout(s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => ctx.stderr(s));
    child.stdin.on('error', () => {});
    // Ctrl-C in the CLI: SIGINT, so ping prints its summary as it would in a terminal.
    const onAbort = () => child.kill('SIGINT');
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    if (params.stdin && ctx.stdin) {
      void (async () => {
        for await (const chunk of ctx.stdin!) if (!child.stdin.destroyed) child.stdin.write(chunk);
        child.stdin.end();
      })().catch(() => child.stdin.end());
    } else child.stdin.end();
    return new Promise((resolve) => {
      child.on('error', (e) => {
        ctx.stderr(`exec: ${prog}: ${e.message}\n`);
        resolve({ exitCode: 127 });
      });
      child.on('close', (code, signal) => {
        ctx.signal.removeEventListener('abort', onAbort);
        resolve({ exitCode: code ?? (signal === 'SIGINT' ? 130 : 1) });
      });
    });
  }

  /** Stops serving; the namespaces stay (a restarted agent adopts them; `podlab down` removes them). */
  async stop(): Promise<void> {
    // calico-node's BIRD stops with it (its peers withdraw our block); a restarted agent starts it again.
    await this.core.stop();
    await this.control?.close();
    await this.runtime.stop();
  }
}
