/**
 * Process entry of the apiserver:
 *
 *   node --import tsx control-plane/main.ts --host 127.0.0.1 --port 6443 --state-dir DIR
 *        [--cluster-cidr 10.244.0.0/16] [--node-cidr-mask-size 24] [--unix-socket PATH]
 *        [--service-cluster-ip-range 10.96.0.0/12] [--service-node-port-range 30000-32767]
 *        [--store sqlite | etcd://HOST:PORT]
 *        [--node-monitor-period 5s] [--node-monitor-grace-period 40s] [--pod-termination-drain 2s]
 *        [--default-not-ready-toleration-seconds 300] [--default-unreachable-toleration-seconds 300]
 *        [--pki-dir DIR] [--tls-san NAME_OR_IP]...
 *
 * It serves HTTPS only and requires a bearer token (control-plane/auth.ts).
 * The CA, serving certificate, admin token and node-token key live in
 * --pki-dir (default `<state-dir>/pki`); whatever is missing is created at
 * start (`podlab up` creates them first). --tls-san adds names the
 * certificate must cover.
 *
 * Prints exactly one line on stdout once listening,
 * `{"event":"listening","url":"https://127.0.0.1:PORT","pid":N}`, and writes
 * the same JSON to `<stateDir>/apiserver/endpoint.json` (the launcher reads
 * either). Exit codes: 0 on SIGTERM/SIGINT, 1 on a runtime failure such as
 * EADDRINUSE, 2 on bad flags. With --unix-socket the same HTTP is also served
 * on that socket file, relayed byte for byte to the TLS port (netns labs: the CLI in the root namespace uses it), and
 * the listening line carries `"unix":"PATH"`. Logs go to stderr via common/log.ts; set
 * PODLAB_DEBUG=* (or podlab:apiserver) to log every request.
 * The store is `<stateDir>/apiserver/store.db` (SQLite) unless --store names
 * an etcd; the state dir still holds endpoint.json either way.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../common/log.ts';
import { helpIfAsked } from '../common/daemon.ts';
import { startApiServer, type ApiServer } from './apiserver.ts';
import type { WorkloadControllerOptions } from './store.ts';
import { ConfigError, DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_CIDR_MASK_SIZE, parseIpamConfig } from './ipam.ts';
import { EtcdPersister, parseEtcdUrl } from './etcd-persister.ts';
import { writeFileAtomic } from './persistence.ts';
import { registry, resourceKeyOf } from './resources.ts';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, parseServiceAllocConfig } from './service-allocator.ts';
import { startUnixRelay, type UnixRelay } from './unix-proxy.ts';

const PROG = 'podlab-apiserver';

/** Bad command-line usage; exits 2. */
class FlagError extends Error {
  override readonly name = 'FlagError';
}

/** Parsed flags. */
interface Flags {
  host: string;
  port: number;
  stateDir: string;
  clusterCidr: string;
  nodeCidrMaskSize: number;
  /** Also serve on this Unix socket (netns labs). */
  unixSocket?: string;
  serviceClusterIpRange: string;
  serviceNodePortRange: string;
  /** `http://HOST:PORT` of an etcd's gateway, or undefined for SQLite in the state dir. */
  etcd?: string;
  controllers: WorkloadControllerOptions;
  pkiDir?: string;
  tlsSans: string[];
}

/** A Go-style duration (`40s`, `500ms`, `2m`) or plain seconds, in ms. */
function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new FlagError(`--${flag}: not a duration (e.g. 40s, 500ms, 2m): ${JSON.stringify(text)}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] as number;
  return Math.round(Number(m[1]) * unit);
}

const OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  'state-dir': { type: 'string' },
  'cluster-cidr': { type: 'string' },
  'node-cidr-mask-size': { type: 'string' },
  'unix-socket': { type: 'string' },
  'service-cluster-ip-range': { type: 'string' },
  'service-node-port-range': { type: 'string' },
  store: { type: 'string' },
  'node-monitor-period': { type: 'string' },
  'node-monitor-grace-period': { type: 'string' },
  'pod-termination-drain': { type: 'string' },
  'default-not-ready-toleration-seconds': { type: 'string' },
  'default-unreachable-toleration-seconds': { type: 'string' },
  'pki-dir': { type: 'string' },
  'tls-san': { type: 'string', multiple: true },
} as const;

function parseFlags(argv: string[]): Flags {
  helpIfAsked('apiserver', 'The Kubernetes-shaped apiserver of a lab: REST, list+watch, the store and the controllers (control-plane/).', OPTIONS, argv);
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: OPTIONS,
    }));
  } catch (err) {
    // parseArgs names the offending flag in its message (e.g. "Unknown option '--prot'").
    throw new FlagError((err as Error).message);
  }
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? (values[k]) : undefined);
  const host = str('host') ?? '127.0.0.1';
  const portText = str('port') ?? '6443';
  if (!/^\d+$/.test(portText) || Number(portText) > 65535) throw new FlagError(`--port: must be an integer 0-65535, got ${JSON.stringify(portText)}`);
  const stateDir = str('state-dir');
  if (!stateDir) throw new FlagError('--state-dir: required (directory for apiserver/store.db and endpoint.json)');
  const storeText = str('store') ?? 'sqlite';
  let etcd: string | undefined;
  if (storeText !== 'sqlite') {
    try {
      etcd = parseEtcdUrl(storeText);
    } catch (err) {
      throw new FlagError((err as Error).message);
    }
  }
  const clusterCidr = str('cluster-cidr') ?? DEFAULT_CLUSTER_CIDR;
  const maskText = str('node-cidr-mask-size') ?? String(DEFAULT_NODE_CIDR_MASK_SIZE);
  if (!/^\d+$/.test(maskText)) throw new FlagError(`--node-cidr-mask-size: must be an integer, got ${JSON.stringify(maskText)}`);
  const nodeCidrMaskSize = Number(maskText);
  const serviceClusterIpRange = str('service-cluster-ip-range') ?? DEFAULT_SERVICE_CIDR;
  const serviceNodePortRange = str('service-node-port-range') ?? DEFAULT_NODE_PORT_RANGE;
  try {
    parseIpamConfig(clusterCidr, nodeCidrMaskSize);
    parseServiceAllocConfig(serviceClusterIpRange, serviceNodePortRange);
  } catch (err) {
    if (err instanceof ConfigError) throw new FlagError(err.message);
    throw err;
  }
  const dur = (flag: string): number | undefined => (str(flag) === undefined ? undefined : parseDuration(flag, str(flag)!));
  const secs = (flag: string): number | undefined => {
    const v = str(flag);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new FlagError(`--${flag}: must be a whole number of seconds, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const controllers: WorkloadControllerOptions = {
    podDrainMs: dur('pod-termination-drain'),
    nodeLifecycle: {
      monitorPeriodMs: dur('node-monitor-period'),
      gracePeriodMs: dur('node-monitor-grace-period'),
      notReadyTolerationSeconds: secs('default-not-ready-toleration-seconds'),
      unreachableTolerationSeconds: secs('default-unreachable-toleration-seconds'),
    },
  };
  if (controllers.nodeLifecycle!.monitorPeriodMs === 0) throw new FlagError('--node-monitor-period: must be above 0');
  const sans = values['tls-san'];
  const tlsSans = Array.isArray(sans) ? sans : [];
  for (const san of tlsSans) if (!/^[A-Za-z0-9.:-]+$/.test(san)) throw new FlagError(`--tls-san: not a DNS name or IP address: ${JSON.stringify(san)}`);
  return { host, port: Number(portText), stateDir, clusterCidr, nodeCidrMaskSize, unixSocket: str('unix-socket'), serviceClusterIpRange, serviceNodePortRange, etcd, controllers, pkiDir: str('pki-dir'), tlsSans };
}

async function main(): Promise<void> {
  let flags: Flags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${PROG}: error: ${(err as Error).message}\n`);
    process.exit(2);
  }
  // PODLAB_DEBUG=* (or podlab:apiserver) turns on one line per request.
  const log = createLogger('podlab:apiserver');
  let server: ApiServer;
  try {
    server = await startApiServer({
      host: flags.host,
      port: flags.port,
      stateDir: flags.stateDir,
      clusterCidr: flags.clusterCidr,
      nodeCidrMaskSize: flags.nodeCidrMaskSize,
      serviceClusterIpRange: flags.serviceClusterIpRange,
      serviceNodePortRange: flags.serviceNodePortRange,
      kubernetesService: true,
      persister: flags.etcd ? new EtcdPersister(flags.etcd, registry.all().map(resourceKeyOf)) : undefined,
      controllers: flags.controllers,
      pkiDir: flags.pkiDir,
      tlsSans: flags.tlsSans,
      log: log.debugEnabled ? (e) => log.debug('request', { ...e }) : undefined,
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') {
      process.stderr.write(`${PROG}: error: ${flags.host}:${flags.port} is already in use (another apiserver running? pick another --port, or 0 for any)\n`);
    } else if (e.code === 'EADDRNOTAVAIL') {
      process.stderr.write(`${PROG}: error: --host ${flags.host} is not an address of this machine\n`);
    } else {
      process.stderr.write(`${PROG}: error: ${e.name}: ${e.message}\n`);
    }
    process.exit(1);
  }
  let relay: UnixRelay | undefined;
  if (flags.unixSocket) {
    try {
      relay = await startUnixRelay(flags.unixSocket, flags.host === '0.0.0.0' ? '127.0.0.1' : flags.host, server.port);
    } catch (err) {
      process.stderr.write(`${PROG}: error: cannot listen on --unix-socket ${flags.unixSocket}: ${(err as Error).message}\n`);
      await server.close();
      process.exit(1);
    }
  }
  const line = JSON.stringify({ event: 'listening', url: server.url, pid: process.pid, ...(relay ? { unix: relay.path } : {}) });
  try {
    const dir = join(flags.stateDir, 'apiserver');
    mkdirSync(dir, { recursive: true });
    writeFileAtomic(join(dir, 'endpoint.json'), `${line}\n`);
  } catch (err) {
    process.stderr.write(`${PROG}: error: cannot write endpoint.json: ${(err as Error).message}\n`);
    await server.close();
    process.exit(1);
  }
  process.stdout.write(`${line}\n`);
  log.info('listening', { url: server.url, stateDir: flags.stateDir, store: flags.etcd ?? 'sqlite', clusterCidr: flags.clusterCidr, nodeCidrMaskSize: flags.nodeCidrMaskSize });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    // Watches are ended cleanly so informers reconnect rather than see a reset; then exit regardless.
    const hardStop = setTimeout(() => process.exit(0), 3000);
    hardStop.unref();
    void Promise.all([server.close(), relay?.close()]).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
