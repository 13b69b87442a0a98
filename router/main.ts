/**
 * The lab router process (`podlab lb-router ...`, started by `podlab up
 * --lb-router`): ./lb-router.ts on one loopback address. Prints one JSON line
 * `{"event":"ready",...}` once its BGP listens and it has read the cluster,
 * or `{"event":"error"}` naming the flag at fault and exits (nothing left
 * bound). Its view is served on a control socket (`podlab router`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { failDaemon, helpIfAsked, runDaemon } from '../common/daemon.ts';
import { createLogger } from '../common/log.ts';
import { ApiClient } from '../control-plane/client.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { ControlServer, controlSocketPath } from '../node-agent/control-server.ts';
import { DEFAULT_LB_HANDOFF_PORT } from '../edge/lb-handoff.ts';
import { parseRouterFlags, ROUTER_CONTROL_NAME, ROUTER_OPTIONS, type RouterFlags } from './flags.ts';
import { LbRouter } from './lb-router.ts';

const log = createLogger('podlab:lb-router');
const fail = (msg: string, code = 2): never => failDaemon('lb-router', msg, code);

helpIfAsked('lb-router', 'The lab\'s upstream router for MetalLB\'s BGP mode: learns LB routes from the nodes over BGP, binds the addresses on loopback and hands each connection to one next-hop node (router/).', ROUTER_OPTIONS);

function parse(): RouterFlags {
  try {
    return parseRouterFlags(process.argv.slice(2), { handoffPort: DEFAULT_LB_HANDOFF_PORT });
  } catch (e) {
    return fail((e as Error).message);
  }
}
const flags = parse();

function client(): ApiClient {
  try {
    return new ApiClient(flags.api, { credentials: adminCredentials(flags.stateDir) });
  } catch (e) {
    return fail(`--state-dir: ${(e as Error).message}`, 1);
  }
}
const api = client();
const router = new LbRouter({ ...flags, api });
const socket = controlSocketPath(flags.stateDir, ROUTER_CONTROL_NAME);
const control = new ControlServer(socket);
control.handle('router.view', () => ({ stdout: router.view() }));
control.handle('router.stats', () => router.stats());

await runDaemon('lb-router', {
  start: async () => {
    await router.start();
    fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
    await control.listen();
  },
  stop: async () => {
    await control.close();
    await router.stop();
  },
}, log, () => ({ ip: flags.ip, bgp: `${flags.ip}:${flags.bgpPort}`, asn: flags.asn, control: socket }));
