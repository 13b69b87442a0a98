/**
 * `podlab`: the kubectl-like command line of the lab.
 */
import { Command, CommanderError, Option } from 'commander';
import { ApiClient } from '../control-plane/client.ts';
import { registry, type ResourceType } from '../control-plane/resources.ts';
import type { ImpairmentSpec } from '../overlay/impairment.ts';
import { callNode, execInPod, getResources, nodeCommand, parseDuration, parsePercent, podLogs, routerCommand, type Output } from './commands.ts';
import { capture } from './capture.ts';
import { runDemo } from './demo.ts';
import { formatTrace, trace, traceExitCode } from './trace.ts';
import { decodeHint, installProfile } from './wireshark.ts';
import { FILTER_HELP } from '../node-agent/capture/filter.ts';
import { BACKEND_NAMES, DEFAULT_BACKEND, backendHelp, bgpBackendNames, findBackend } from '../backends/registry.ts';
import { labStatus } from './status.ts';
import { LabError, ROOT, SUPPORTED_BACKENDS, applyObjects, down, killProcess, labApi, requireLab, restartProcess, stopLabsOnInterrupt, up, waitApplied } from '../lab/lab.ts';
import type { UpOptions } from '../lab/launch.ts';
import { ManifestError, SUPPORTED_KINDS, loadManifestFile, type LoadedObject } from '../lab/manifest.ts';
import { readLab, resolveStateDir } from '../lab/state.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { registerScenarioCommand } from '../scenarios/cli.ts';

const program = new Command();
program
  .name('podlab')
  .description('An emulator of Kubernetes pod networking: real processes, real VXLAN (UDP 8472), kubectl-like commands.')
  .option('--state-dir <dir>', 'lab state directory (default: $PODLAB_HOME or ./.podlab)')
  .showHelpAfterError('(run with --help for usage)')
  .addHelpText('after', '\nLab processes, as netns labs and containers start them (lab/daemons.ts):\n  podlab apiserver|agent|kernel-node [flags]   flags: control-plane/main.ts, node-agent/main.ts, kernel-node/main.ts')
  .exitOverride();

/** What commander hands each verb's action: the options as declared below. */
interface UpCli {
  nodes: number;
  podsPerNode?: number;
  filename?: string[];
  detach?: boolean;
  demo?: boolean;
  labNet: string;
  apiPort: number;
  clusterCidr: string;
  store?: string;
  nodeCidrMaskSize?: number;
  backend: NonNullable<UpOptions['backend']>;
  proxyMode: UpOptions['proxyMode'];
  ipvsScheduler: UpOptions['ipvsScheduler'];
  bgpTopology?: UpOptions['bgpTopology'];
  bgpReflectors?: number;
  bgpPort?: number;
  bgpHoldTime: number;
  lbRouter?: boolean;
  lbRouterAsn?: number;
  vxlanPort: number;
  wirePort: number;
  wire?: UpOptions['wire'];
  mtu: number;
  seed: number;
  mode: 'local' | 'netns' | 'docker';
  underlayNet: string;
  kernelNodes: number;
  netnsPrefix: string;
  dockerProject: string;
  dockerBridge: string;
  dockerCapture?: string;
  dockerLocalBase?: boolean;
}
interface DeleteCli {
  namespace: string;
  filename?: string[];
}
interface GetCli {
  output?: Output;
  namespace: string;
  allNamespaces?: boolean;
}
interface LogsCli {
  container?: string;
  follow?: boolean;
  tail?: number;
  since?: number;
  timestamps?: boolean;
  namespace: string;
}
interface ExecCli {
  namespace: string;
  stdin?: boolean;
  viaApiserver?: boolean;
}
interface ImpairCli {
  peer?: string;
  loss?: string;
  delay?: string;
  jitter?: string;
  duplicate?: string;
  reorder?: string;
  corrupt?: string;
  blackhole?: boolean;
  clear?: boolean;
}
interface CaptureCli {
  write?: string;
  count?: number;
  duration?: number;
  filter?: string;
  pod?: string;
  all?: boolean;
  list?: boolean;
}
interface TraceCli {
  proto: 'icmp' | 'udp' | 'tcp';
  port?: number;
  size?: number;
  ttl?: number;
  timeout: number;
  seed: number;
  output?: 'json';
}

const stateDir = () => resolveStateDir(program.opts().stateDir as string | undefined);
const out = (s: string) => process.stdout.write(s);
const int = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new LabError(`${flag}: '${v}' is not an integer`);
  return n;
};

/** kubectl's --since: `30s`, `5m`, `2h` in whole seconds. */
function sinceSeconds(v: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(v.trim());
  if (!m || Number(m[1]) === 0) throw new LabError(`--since: '${v}' is not a duration like 30s, 5m or 2h`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
}

function loadAll(files: string[] | undefined): LoadedObject[] {
  return (files ?? []).flatMap((f) => loadManifestFile(f));
}

program
  .command('up')
  .description('start a lab: an apiserver and one node-agent process per node on 127.0.0.x, pods on every node')
  .option('--nodes <n>', 'number of nodes', int('--nodes'), 3)
  .option('--pods-per-node <m>', 'pods to create on each node (pod-<node><letter>); default 2, or 0 when -f gives the workload', int('--pods-per-node'))
  .option('-f, --filename <file...>', 'Kubernetes YAML with Pods/Namespaces to create (multi-document)')
  .option('--detach', 'return once every node is Ready and every pod Running; the lab keeps running')
  .option('--demo', 'the npm start lab: 3 nodes x 2 pods and a printed walkthrough, until Ctrl-C')
  .addOption(new Option('--lab-net <cidr>', 'loopback network of the lab: apiserver at .10, node-N at .(10+N)').default('127.0.0.0/24'))
  .option('--api-port <port>', 'apiserver port (0 = any free port)', int('--api-port'), 6443)
  .option('--cluster-cidr <cidr>', 'pod network; each node gets a /24 of it', '10.244.0.0/16')
  .option('--node-cidr-mask-size <n>', "size of each node's podCIDR (default 24; /29 leaves 5 pod addresses, to see IPAM run out)", int('--node-cidr-mask-size'))
  .option('--store <store>', "the apiserver's store: sqlite (in the state dir; default) | etcd://HOST:PORT (a running etcd, keys as kube-apiserver lays them out)")
  .option('--backend <name>', `pod network backend: ${SUPPORTED_BACKENDS.join(' | ')} (${backendHelp()})`, DEFAULT_BACKEND)
  .option('--proxy-mode <mode>', 'kube-proxy mode: iptables (default) | ipvs | userspace', 'iptables')
  .option('--ipvs-scheduler <s>', 'with --proxy-mode ipvs: rr | wrr | lc | wlc | sh | dh | sed | nq', 'rr')
  .option('--bgp-topology <t>', `with --backend ${bgpBackendNames().join('/')}: full-mesh (Calico default) | route-reflector`)
  .option('--bgp-reflectors <n>', 'with --bgp-topology route-reflector: how many nodes reflect (default 2)', int('--bgp-reflectors'))
  .option('--bgp-port <port>', 'BGP port of every node (default 179 as root, else 1179)', int('--bgp-port'))
  .option('--bgp-hold-time <sec>', 'BGP hold time proposed by the nodes (keepalive = a third)', int('--bgp-hold-time'), 9)
  .option('--lb-router', `with --backend ${bgpBackendNames().join('/')}: start the lab's upstream router (lb-router at <net>.9): it peers with every node over BGP (BGPPeer lb-router), binds the BGP-advertised LoadBalancer addresses on loopback and hands each connection to one announcing node (ECMP); the default pool gets a BGPAdvertisement instead of an L2Advertisement`)
  .option('--lb-router-asn <asn>', 'with --lb-router: the router\'s AS (default 64513; the nodes\' is 64512)', int('--lb-router-asn'))
  .option('--vxlan-port <port>', 'VXLAN UDP port (Flannel and Linux: 8472; IANA: 4789)', int('--vxlan-port'), 8472)
  .option('--wire-port <port>', `UDP port of the bare-IPv4 underlay wire of ${routedBackends()} in local mode (Wireshark: -d udp.port==N,ip)`, int('--wire-port'), 8473)
  .addOption(new Option('--wire <kind>', `${routedBackends()}: udp = the bare-IPv4 wire in UDP (local default) | raw = real frames on eth0 with pod IPs, via libpcap (netns default)`).choices(['udp', 'raw']))
  .option('--mtu <bytes>', `underlay MTU (pods and tunnel devices get the backend's overhead less: ${mtuOverheads()})`, int('--mtu'), 1500)
  .option('--seed <n>', 'seed for every random choice (MACs, impairments, ids)', int('--seed'), 1)
  // netns labs (lab/netns-lab.ts), docker labs (lab/docker-lab.ts)
  .addOption(new Option('--mode <mode>', 'local: processes on 127.0.0.x, no root | netns: each node in its own network namespace on a bridge (root) | docker: docker-compose, one container per node').choices(['local', 'netns', 'docker']).default('local'))
  .option('--underlay-net <cidr>', 'netns: underlay subnet, inside the lab namespaces only (bridge + apiserver .10, node-N .(10+N))', '10.250.0.0/24')
  .option('--kernel-nodes <k>', `netns: K more nodes that are the Linux kernel itself (cni0, pods as namespaces; backends: ${BACKEND_NAMES.filter((n) => findBackend(n)!.kernel).join(', ')})`, int('--kernel-nodes'), 0)
  .option('--netns-prefix <p>', 'netns: prefix of every namespace name (podlab-underlay, podlab-node-1, ...)', 'podlab')
  .option('--docker-project <name>', 'docker: the compose project name', 'podlab')
  .option('--docker-bridge <name>', 'docker: the lab network\'s bridge (the capture side-car and raw frames name it)', 'podlab0')
  .option('--docker-capture <dir>', 'docker: start the capture side-car, pcapng of the lab bridge into DIR/lab.pcapng')
  .option('--docker-local-base', 'docker: make the Dockerfile\'s base image from Debian\'s archive first (scripts/docker-base.sh, root, no registry needed)')
  .action(async (o: UpCli) => {
    const demo = !!o.demo;
    if (o.mode === 'docker') {
      const { dockerUp, dockerHints } = await import('../lab/docker-lab.ts');
      const rec = await dockerUp({
        stateDir: stateDir(),
        root: ROOT,
        nodes: o.nodes,
        backend: o.backend,
        wire: o.wire,
        mtu: o.mtu,
        clusterCidr: o.clusterCidr,
        project: o.dockerProject,
        bridge: o.dockerBridge,
        captureDir: o.dockerCapture,
        localBase: !!o.dockerLocalBase,
        manifests: o.filename ?? [],
        timeoutMs: 180_000,
        onProgress: (m) => process.stderr.write(`podlab: ${m}\n`),
      });
      out(`podlab: docker lab up: ${o.nodes} node containers (node-1..node-${o.nodes}), project ${rec.project}; it keeps running (podlab down stops it)\n${dockerHints(rec)}\n`);
      return;
    }
    if (o.mode !== 'netns' && o.kernelNodes) throw new LabError('--kernel-nodes: kernel nodes need --mode netns (and root)');
    const manifests = loadAll(o.filename); // checked before anything starts
    const dir = stateDir();
    // Ctrl-C while the lab comes up: nothing more starts, and what had started stops.
    const upInterrupted = stopLabsOnInterrupt((m) => process.stderr.write(`podlab: ${m}\n`));
    const rec = await up({
      stateDir: dir,
      nodes: demo && o.nodes === 3 ? 3 : o.nodes,
      // A lab with nothing in it is never what a first `up` wants: without -f, every node gets two pods.
      podsPerNode: o.podsPerNode ?? (manifests.length && !demo ? 0 : 2),
      manifests,
      labNet: o.labNet,
      apiPort: o.apiPort,
      clusterCidr: o.clusterCidr,
      store: o.store,
      nodeCidrMaskSize: o.nodeCidrMaskSize,
      vxlanPort: o.vxlanPort,
      backend: o.backend,
      wirePort: o.wirePort,
      wire: o.wire,
      bgpTopology: o.bgpTopology,
      proxyMode: o.proxyMode,
      ipvsScheduler: o.ipvsScheduler,
      bgpReflectors: o.bgpReflectors,
      bgpPort: o.bgpPort,
      bgpHoldTime: findBackend(o.backend)?.bgp ? o.bgpHoldTime : undefined,
      lbRouter: o.lbRouter,
      lbRouterAsn: o.lbRouterAsn,
      seed: o.seed,
      mtu: o.mtu,
      mode: o.mode,
      underlayNet: o.underlayNet,
      kernelNodes: o.kernelNodes,
      netnsPrefix: o.netnsPrefix,
      waitReady: true,
      ownerPid: o.detach ? undefined : process.pid,
      supervise: true,
      onProgress: (m) => process.stderr.write(`podlab: ${m}\n`),
    }).finally(upInterrupted);
    const where = rec.netns ? `${rec.netns.subnet} (namespaces ${rec.netns.prefix}-*, bridge ${rec.netns.bridge} in ${rec.netns.underlay})` : o.labNet;
    out(`podlab: lab up: ${rec.nodes.length} nodes on ${where}, apiserver ${rec.apiInternalUrl ? `${rec.apiInternalUrl} (CLI: ${rec.apiUrl})` : rec.apiUrl}, state ${dir}\n`);
    if (o.detach) return;
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      if (demo) await runDemo(dir, ac.signal);
      else out(`podlab: running in the foreground; Ctrl-C stops the lab (or use --detach)\n`);
      // Every child is unref'd: this timer is what keeps a foreground lab's CLI alive until Ctrl-C.
      const keepAlive = setInterval(() => {}, 1 << 30);
      if (!ac.signal.aborted) await new Promise((r) => ac.signal.addEventListener('abort', r, { once: true }));
      clearInterval(keepAlive);
    } finally {
      process.stderr.write('\npodlab: stopping the lab...\n');
      const r = await down(dir);
      process.stderr.write(`podlab: stopped ${r.stopped} processes\n`);
    }
  });

program
  .command('down')
  .description('stop every process of the lab and remove its state (logs are kept)')
  .option('--force', 'also clean up after a crashed lab from lab.json: processes by pid, netns labs\' namespaces (same as down; never fails when nothing runs)')
  .action(async () => {
    const dir = stateDir();
    const { dockerDown } = await import('../lab/docker-lab.ts');
    if (await dockerDown(dir, (m) => process.stderr.write(`podlab: ${m}\n`))) {
      out('podlab: docker lab removed\n');
      return;
    }
    const had = readLab(dir);
    const r = await down(dir);
    out(had ? `podlab: lab stopped (${r.stopped} processes)\n` : `podlab: no lab in ${dir}\n`);
  });

program
  .command('status')
  .description("the lab's processes: pid, running / stopped / crashed, restarts by the supervisor")
  .action(() => {
    const r = labStatus(stateDir());
    out(r.text);
    if (!r.found) process.exitCode = 1;
  });

program
  .command('apply')
  .description(`create or update the objects of YAML files in the running lab (${Object.keys(SUPPORTED_KINDS).join(', ')})`)
  .requiredOption('-f, --filename <file...>', 'YAML file(s), multi-document; - reads stdin')
  .option('-s, --server <url>', 'an apiserver without a local lab.json (containers: https://apiserver:6443; or unix:/path/api.sock)')
  .option('--wait [sec]', "then wait until every pod is Running and every applied Service's endpoints are ready (default 60 s)")
  .action(async (o: { filename: string[]; server?: string; wait?: boolean | string }) => {
    const objs = loadAll(o.filename);
    // Without a lab.json (containers), the token and CA come from PODLAB_TOKEN / PODLAB_CA_FILE or $PODLAB_HOME/pki.
    const api = o.server ? new ApiClient(o.server, { credentials: adminCredentials(stateDir()) }) : labApi(requireLab(stateDir()));
    for (const line of await applyObjects(api, objs)) out(line + '\n');
    if (o.wait === undefined) return;
    const seconds = o.wait === true ? 60 : Number(o.wait);
    if (!(seconds > 0)) throw new LabError(`--wait: '${String(o.wait)}' is not a number of seconds`);
    await waitApplied(api, objs, seconds * 1000);
  });

program
  .command('delete')
  .description('delete objects: delete pod|node|namespace|service|endpointslice NAME... | delete -f FILE')
  .argument('[kind]', 'pod | node | namespace | service (svc) | endpointslice | ...')
  .argument('[names...]', 'object names')
  .option('-n, --namespace <ns>', 'namespace', 'default')
  .option('-f, --filename <file...>', 'delete the objects of these files')
  .action(async (kind: string | undefined, names: string[], o: DeleteCli) => {
    const rec = requireLab(stateDir());
    const api = labApi(rec);
    const targets: { rt: ResourceType; name: string; ns?: string }[] = [];
    for (const l of loadAll(o.filename)) {
      const rt = registry.byKind(l.obj.apiVersion, l.obj.kind);
      if (!rt) throw new LabError(`${l.file}:${l.line}: kind ${l.obj.kind} is not served by podlab`);
      targets.push({ rt, name: l.obj.metadata.name, ns: rt.namespaced ? (l.obj.metadata.namespace ?? 'default') : undefined });
    }
    if (kind) {
      const rt = registry.resolve(kind);
      if (!rt) throw new LabError(`error: the server doesn't have a resource type "${kind}"`);
      if (!names.length) throw new LabError(`delete ${kind}: name required`);
      for (const n of names) targets.push({ rt, name: n, ns: rt.namespaced ? o.namespace : undefined });
    }
    if (!targets.length) throw new LabError('delete: nothing to delete (give KIND NAME or -f FILE)');
    for (const t of targets) {
      const r = await api.delete(t.rt.plural, t.name, t.ns);
      if (!r) throw new LabError(`Error from server (NotFound): ${t.rt.plural} "${t.name}" not found`);
      out(`${t.rt.singular} "${t.name}" deleted\n`);
    }
  });

program
  .command('get')
  .description('list nodes, pods, services or endpointslices, as kubectl get')
  .argument('<kind>', 'nodes | pods | services | endpointslices (no, po, svc)')
  .argument('[name]', 'one object')
  .option('-o, --output <format>', "output format: wide | json | yaml | jsonpath=TEMPLATE (kubectl's, e.g. jsonpath='{.spec.clusterIP}')", (v: string) => {
    if (['wide', 'json', 'yaml'].includes(v) || v.startsWith('jsonpath=')) return v;
    throw new LabError(`-o: unknown output format '${v}' (wide, json, yaml, jsonpath=TEMPLATE)`);
  })
  .option('-n, --namespace <ns>', 'namespace', 'default')
  .option('-A, --all-namespaces', 'pods of every namespace')
  .action(async (kind: string, name: string | undefined, o: GetCli) => {
    out(await getResources(stateDir(), kind, { name, namespace: o.namespace, all: o.allNamespaces, output: o.output ?? 'table' }));
  });

program
  .command('exec')
  .description('run a command in a pod: ping, udp, curl, nc, transfer, nslookup, dig, cat, ip, ss, ps, hostname (podlab exec POD -- curl http://web.default.svc.cluster.local)')
  .argument('<pod>', 'pod name (or namespace/name)')
  .argument('<command...>', 'the command after --')
  .option('-n, --namespace <ns>', 'namespace', 'default')
  .option('-i, --stdin', "forward this terminal's standard input to the command (always done when stdin is not a terminal)")
  .option('--via-apiserver', "go through the apiserver's pods/exec (WebSocket v5.channel.k8s.io) as kubectl exec does, not straight to the node's agent; done anyway when the agent cannot be reached from here")
  .addHelpText(
    'after',
    `
Commands available in pods:
  ping [-c N] [-i INTERVAL] [-W TIMEOUT] [-w DEADLINE] [-s SIZE] [-t TTL] [-M do|want|dont] [-q] DEST
  udp send DEST PORT [MESSAGE] [-n COUNT] [-i INTERVAL] [-p SRCPORT] [-s SIZE]
  udp listen PORT [-n COUNT] [-w TIMEOUT] [--echo] [-q]
  ip addr | ip route | ip neigh | ip link
  curl [-s] [-v] [-f] [-i] [-I] [-m SECONDS] [-o /dev/null] [-w FORMAT] URL
  nc [-v] [-z] [-w SECONDS] HOST PORT | nc -l [-k] PORT | nc -u HOST PORT     (stdin: pipe into podlab exec, or -i)
  transfer --bytes N [--seed S] HOST:PORT      (to a podlab/echo pod; SHA-256 verified)
  ss [-t] [-u] [-l] [-a] [-n] [-i]
  ps
  hostname`,
  )
  .action(async (pod: string, command: string[], o: ExecCli) => {
    const ac = new AbortController();
    const onInt = () => ac.abort();
    process.on('SIGINT', onInt);
    try {
      process.exitCode = await execInPod(stateDir(), pod, command, {
        stdout: (s) => process.stdout.write(s),
        stderr: (s) => process.stderr.write(s),
        signal: ac.signal,
        namespace: o.namespace,
        // Standard input goes to the command when piped in, or with -i (nc, transfer read it).
        stdin: o.stdin || !process.stdin.isTTY ? process.stdin : undefined,
        viaApiserver: o.viaApiserver,
      });
    } finally {
      process.off('SIGINT', onInt);
    }
  });

program
  .command('logs')
  .description("a container's output (nginx's access log, an app's start line), as kubectl logs")
  .argument('<pod>', 'pod name (or namespace/name)')
  .option('-c, --container <name>', 'the container (needed when the pod has several)')
  .option('-f, --follow', 'keep printing new lines until Ctrl-C')
  .option('--tail <n>', 'only the last N lines', int('--tail'))
  .option('--since <duration>', 'only lines newer than this (5s, 2m, 1h)', sinceSeconds)
  .option('--timestamps', 'prefix each line with its RFC 3339 time')
  .option('-n, --namespace <ns>', 'namespace', 'default')
  .action(async (pod: string, o: LogsCli) => {
    const ac = new AbortController();
    const onInt = () => ac.abort();
    process.on('SIGINT', onInt);
    try {
      await podLogs(stateDir(), pod, { container: o.container, follow: o.follow, tailLines: o.tail, sinceSeconds: o.since, timestamps: o.timestamps }, { stdout: (s) => process.stdout.write(s), signal: ac.signal, namespace: o.namespace });
    } finally {
      process.off('SIGINT', onInt);
    }
  });

program
  .command('router')
  .description("the lab's upstream router (up --lb-router): its BGP sessions with the nodes, the learned LoadBalancer routes with their ECMP next hops, the addresses it binds and the hand-offs per next hop")
  .option('--json', 'the counters, bound addresses and routes as JSON')
  .action(async (o: { json?: boolean }) => {
    out(await routerCommand(stateDir(), !!o.json));
  });

program
  .command('node')
  .description('look inside a node: ip route | ip neigh | ip link | ip addr | bridge fdb | bgp summary | bgp routes | iptables-save [-t nat|filter] | ipvsadm -Ln | ipset list | conntrack -L | lb | stats | restart [--kill] | stop [--kill] | start | ip link set dev DEV mtu N')
  .argument('<node>', 'node name, e.g. node-1')
  .argument('<command...>', 'what to show or do')
  .allowUnknownOption()
  .action(async (node: string, command: string[]) => {
    const dir = stateDir();
    if (command[0] === 'restart' || command[0] === 'start') {
      const r = await restartProcess(dir, node, { kill: command.includes('--kill') });
      out(`podlab: ${node} ${command[0] === 'start' ? 'started' : 'restarted'} (pid ${r.pid})\n`);
      return;
    }
    if (command[0] === 'stop') {
      // Held: the lab's supervisor leaves a node stopped this way down until `start` or `restart`.
      await killProcess(dir, node, { kill: command.includes('--kill') });
      out(`podlab: ${node} stopped${command.includes('--kill') ? ' (SIGKILL)' : ''}; 'podlab node ${node} start' brings it back\n`);
      return;
    }
    out(await nodeCommand(dir, node, command));
  });

program
  .command('impair')
  .description('impair the underlay from NODE towards a peer node (seeded; see --seed of up)')
  .argument('<node>', 'the sending node')
  .option('--peer <node>', 'the peer node (by name or IP)')
  .option('--loss <pct>', 'drop this share of datagrams, e.g. 5%')
  .option('--delay <time>', 'delay every datagram, e.g. 20ms')
  .option('--jitter <time>', 'vary the delay uniformly by up to this much')
  .option('--duplicate <pct>', 'send this share twice')
  .option('--reorder <pct>', 'let this share overtake the others')
  .option('--corrupt <pct>', 'flip one bit in this share')
  .option('--blackhole', 'drop everything')
  .option('--clear', 'remove the impairment (towards --peer, or every peer)')
  .action(async (node: string, o: ImpairCli) => {
    const dir = stateDir();
    if (o.clear) {
      const r = await callNode<{ cleared: string[] }>(dir, node, 'impair.clear', { peer: o.peer });
      out(`podlab: cleared impairments on ${node} towards ${r.cleared.join(', ') || 'nobody'}\n`);
      return;
    }
    if (!o.peer) throw new LabError('impair: --peer NODE is required (or --clear)');
    const spec: ImpairmentSpec = {};
    if (o.loss !== undefined) spec.loss = parsePercent(o.loss, '--loss');
    if (o.delay !== undefined) spec.delayMs = parseDuration(o.delay, '--delay');
    if (o.jitter !== undefined) spec.jitterMs = parseDuration(o.jitter, '--jitter');
    if (o.duplicate !== undefined) spec.duplicate = parsePercent(o.duplicate, '--duplicate');
    if (o.reorder !== undefined) spec.reorder = parsePercent(o.reorder, '--reorder');
    if (o.corrupt !== undefined) spec.corrupt = parsePercent(o.corrupt, '--corrupt');
    if (o.blackhole) spec.blackhole = true;
    if (!Object.keys(spec).length) throw new LabError('impair: give at least one of --loss --delay --jitter --duplicate --reorder --corrupt --blackhole');
    const r = await callNode<{ ip: string }>(dir, node, 'impair.set', { peer: o.peer, spec });
    out(`podlab: ${node} -> ${o.peer} (${r.ip}): ${JSON.stringify(spec)}\n`);
  });

program
  .command('capture')
  .description('capture a node\'s interfaces to pcapng: eth0 (outer VXLAN), flannel.1, cni0, vethXXXX, pod/NAME')
  .argument('<node>', 'the node, e.g. node-1')
  .argument('[iface]', 'interface(s), comma-separated: eth0, flannel.1, cni0, a host veth, or pod/NAME for a pod\'s eth0')
  .option('-w, --write <file>', 'write pcapng to FILE, or - for stdout (live: | wireshark -k -i -)')
  .option('-c, --count <n>', 'stop after N packets', int('-c'))
  .option('--duration <sec>', 'stop after SEC seconds', (v) => Number(v))
  .option('-f, --filter <expr>', 'capture filter (a pcap-filter subset, see below)')
  .option('--pod <name>', "capture the pod's own eth0 (same as IFACE pod/NAME)")
  .option('--all', 'every interface of the node at once, interleaved in time order')
  .option('--list', 'list the interfaces of the node')
  .addHelpText('after', `\nFilter: ${FILTER_HELP}\nExamples:\n  podlab capture node-1 flannel.1 -w - | wireshark -k -i -\n  podlab capture node-1 eth0 -c 10 -w vxlan.pcapng && tshark -r vxlan.pcapng -d udp.port==8472,vxlan\n  podlab capture node-2 --pod pod-2a -f 'icmp'`)
  .action(async (node: string, iface: string | undefined, o: CaptureCli) => {
    const dir = stateDir();
    if (o.list) {
      const list = await callNode<{ ref: string; description: string }[]>(dir, node, 'capture.list', {});
      for (const x of list) out(`${x.ref.padEnd(24)} ${x.description}\n`);
      return;
    }
    const ifaces = [...(iface ? iface.split(',') : []), ...(o.pod ? [`pod/${o.pod}`] : [])];
    if (!ifaces.length && !o.all) throw new LabError('capture: name an interface (eth0, flannel.1, cni0, vethXXXX, pod/NAME) or use --all; --list shows them');
    const ac = new AbortController();
    const onInt = () => ac.abort();
    process.on('SIGINT', onInt);
    const toStdout = o.write === '-';
    const log = (s: string) => (toStdout || o.write ? process.stderr.write(s) : process.stdout.write(s));
    const lab = requireLab(dir);
    if (toStdout) process.stderr.write(decodeHint(lab.options, '-') + '\n');
    try {
      const r = await capture(dir, { node, ifaces, all: o.all, write: o.write, count: o.count, durationS: o.duration, filter: o.filter, signal: ac.signal, log });
      process.stderr.write(`${r.captured} packets captured${r.dropped ? `, ${r.dropped} dropped (reader too slow)` : ''}\n`);
      if (o.write && !toStdout) process.stderr.write(decodeHint(lab.options, o.write) + '\n');
    } finally {
      process.off('SIGINT', onInt);
    }
  });

program
  .command('wireshark')
  .description('set up Wireshark for podlab captures: --install-profile copies the "podlab" profile (Decode As UDP 8472 -> VXLAN, 8473 -> IPv4)')
  .option('--install-profile', 'copy the profile to $WIRESHARK_CONFIG_DIR, $XDG_CONFIG_HOME/wireshark or ~/.config/wireshark')
  .action((o: { installProfile?: boolean }) => {
    if (!o.installProfile) throw new LabError('wireshark: nothing to do (try --install-profile)');
    const dest = installProfile();
    out(`podlab: Wireshark profile installed in ${dest}\npodlab: use it with: tshark -C podlab -r FILE, or wireshark -C podlab (Edit > Configuration Profiles)\n`);
  });

program
  .command('trace')
  .description('send one real packet from a pod and print every hop it took, with the decisions and values used; exit 0 when the answer came back, 1 when the packet was dropped, refused or unanswered')
  .argument('<pod>', 'the sending pod')
  .argument('<dest>', 'destination IP (a pod, a node, anything)')
  .addOption(new Option('--proto <proto>', 'probe protocol').choices(['icmp', 'udp', 'tcp']).default('icmp'))
  .option('--port <n>', 'destination port (udp)', int('--port'))
  .option('--size <bytes>', 'probe payload size (56 like ping); with a lowered MTU shows fragmentation-needed', int('--size'))
  .option('--ttl <n>', 'probe TTL (1 expires at the first router)', int('--ttl'))
  .option('--timeout <sec>', 'how long to wait for an answer', (v) => Number(v), 2)
  .option('--seed <n>', 'seed for the probe id', int('--seed'), 1)
  .addOption(new Option('-o, --output <format>', 'json for structured output').choices(['json']))
  .action(async (pod: string, dest: string, o: TraceCli) => {
    const r = await trace(stateDir(), pod, dest, { proto: o.proto, port: o.port, seed: o.seed, timeoutMs: o.timeout * 1000, size: o.size, ttl: o.ttl });
    out(o.output === 'json' ? JSON.stringify(r, null, 2) + '\n' : formatTrace(r));
    process.exitCode = traceExitCode(r);
  });

registerScenarioCommand(program);

/** Prints errors the way kubectl does: one line, no stack, exit 1. */
async function main(): Promise<void> {
  // `podlab ... | head`: a reader that stops reading ends the command quietly, as coreutils do on SIGPIPE.
  // A verb with its own teardown (scenario run) listens too and finishes first.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (process.stdout.listenerCount('error') > 1) return;
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof LabError || e instanceof ManifestError || (e as Error).name === 'RemoteError' || (e as Error).name === 'ControlError' || (e as Error).name === 'ApiError') {
      process.stderr.write(`podlab: ${(e as Error).message}\n`);
    } else if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ECONNREFUSED') {
      process.stderr.write(`podlab: the lab is not answering (${(e as Error).message}); is it running? try 'podlab down' then 'podlab up'\n`);
    } else {
      process.stderr.write(`podlab: ${(e as Error).stack ?? String(e)}\n`);
    }
    process.exitCode = 1;
  }
}

// Not awaited at the top level: the built command is a CommonJS script (cli/podlab.ts).
void main();

/** `vxlan 50, host-gw 0, ...`: each backend's encapsulation overhead, for --mtu's help. */
function mtuOverheads(): string {
  return BACKEND_NAMES.map((n) => `${n} ${findBackend(n)!.mtuOverhead}`).join(', ');
}

/** `host-gw/bgp`: the backends whose pods' packets cross the underlay as they are. */
function routedBackends(): string {
  return BACKEND_NAMES.filter((n) => findBackend(n)!.ipUnderlay).join('/');
}
