/**
 * The pieces of the container lab that need no Docker: the node's ordinal
 * from Compose's DNS names (with a stub resolver that answers as Docker's
 * embedded DNS does: nothing for the asker's own address, a timeout for
 * unknown names), the remote control listener's client filter and a real
 * TCP round trip through it, and host-local IPAM dropping addresses of a
 * podCIDR the node no longer has.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { composeOrdinalName, OrdinalError, parseComposeName, type OrdinalDns } from '../lab/compose-ordinal.ts';
import { addressAllowed, listenRemoteControl } from '../node-agent/control-remote.ts';
import { ControlServer } from '../node-agent/control-server.ts';
import { ControlClient } from '../control-plane/node-control-client.ts';
import { HostLocalIpam } from '../node-agent/ipam.ts';

/** Docker's embedded DNS as seen from the container at `self`. */
function dockerDns(self: string, containers: Record<string, string>, aliases: Record<string, string[]>): OrdinalDns & { asked: string[] } {
  const asked: string[] = [];
  const timeout = () => Promise.reject(Object.assign(new Error('queryA ETIMEOUT'), { code: 'ETIMEOUT' }));
  return {
    asked,
    async resolve4(name) {
      asked.push(name);
      if (aliases[name]) return aliases[name];
      if (containers[name]) return [containers[name]];
      return timeout();
    },
    async reverse(ip) {
      if (ip === self) return [];
      const name = Object.keys(containers).find((n) => containers[n] === ip);
      return name ? [`${name}.lab_podlab`] : timeout();
    },
  };
}

test('parseComposeName: compose v1 and v2 container names from a reverse lookup', (t) => {
  t.deepEqual(parseComposeName('podlab_node_2.podlab_podlab', ['node']), { project: 'podlab', sep: '_', service: 'node', n: 2 });
  t.deepEqual(parseComposeName('my-lab-node-12.my-lab_podlab.', ['node']), { project: 'my-lab', sep: '-', service: 'node', n: 12 });
  t.deepEqual(parseComposeName('podlab-test-7_apiserver_1.x', ['node', 'apiserver']), { project: 'podlab-test-7', sep: '_', service: 'apiserver', n: 1 });
  t.is(parseComposeName('c0ffee01', ['node']), undefined);
  t.is(parseComposeName('podlab_node.2.abcdef.podlab_podlab', ['node']), undefined, 'a Swarm task name (the slot comes from the environment there)');
});

test('composeOrdinalName: the number whose name resolves to this container, with gaps and a lone node', async (t) => {
  const containers = { lab_apiserver_1: '10.9.0.2', lab_node_1: '10.9.0.3', lab_node_3: '10.9.0.5', lab_node_4: '10.9.0.6' };
  const nodes = ['10.9.0.3', '10.9.0.5', '10.9.0.6'];
  t.is(await composeOrdinalName({ ip: '10.9.0.5', dns: dockerDns('10.9.0.5', containers, { node: nodes, apiserver: ['10.9.0.2'] }) }), 'node-3');
  t.is(await composeOrdinalName({ ip: '10.9.0.6', dns: dockerDns('10.9.0.6', containers, { node: nodes, apiserver: ['10.9.0.2'] }) }), 'node-4');
  // Alone: the project comes from the apiserver's name.
  const alone = { lab_apiserver_1: '10.9.0.2', lab_node_1: '10.9.0.3' };
  const d = dockerDns('10.9.0.3', alone, { node: ['10.9.0.3'], apiserver: ['10.9.0.2'] });
  t.is(await composeOrdinalName({ ip: '10.9.0.3', dns: d }), 'node-1');
  t.true(d.asked.includes('lab_node_1'));
  // Swarm: the expanded slot wins; Compose's unexpanded template is ignored.
  t.is(await composeOrdinalName({ ip: '10.9.0.3', slot: '5', dns: d }), 'node-5');
  t.is(await composeOrdinalName({ ip: '10.9.0.3', slot: '{{.Task.Slot}}', dns: d }), 'node-1');
  // Not under Compose at all.
  const none = dockerDns('10.9.0.3', {}, {});
  const err = await t.throwsAsync(composeOrdinalName({ ip: '10.9.0.3', dns: none }), { instanceOf: OrdinalError });
  t.regex(err.message, /PODLAB_NODE_NAME/);
});

test('remote control: only clients from the underlay subnet', (t) => {
  t.true(addressAllowed('172.30.0.4', '172.30.0.0/16'));
  t.true(addressAllowed('::ffff:172.30.9.9', '172.30.0.0/16'));
  t.false(addressAllowed('172.31.0.4', '172.30.0.0/16'));
  t.false(addressAllowed('::1', '127.0.0.0/8'));
  t.false(addressAllowed(undefined, '0.0.0.0/0'));
});

test('remote control: the Unix socket protocol over TCP, refused from outside the allowed subnet', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-remote-'));
  const control = new ControlServer(path.join(dir, 'c.sock'));
  control.handle('echo', (p, ctx) => {
    ctx.stdout('streamed\n');
    return Promise.resolve(p);
  });
  await control.listen();
  const ok = await listenRemoteControl(control, { host: '127.0.0.1', port: 0, allow: '127.0.0.0/8' });
  const denied = await listenRemoteControl(control, { host: '127.0.0.1', port: 0, allow: '10.0.0.0/8' });
  t.teardown(async () => {
    ok.close();
    denied.close();
    await control.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const port = (s: typeof ok) => (s.address() as { port: number }).port;
  const c = await ControlClient.connect(`tcp://127.0.0.1:${port(ok)}`);
  let out = '';
  t.deepEqual(await c.call('echo', { x: 1 }, (_fd, s) => (out += s)), { x: 1 });
  t.is(out, 'streamed\n');
  c.close();
  const d = await ControlClient.connect(`tcp://127.0.0.1:${port(denied)}`);
  await t.throwsAsync(d.call('echo', {}), { message: /closed/ });
  d.close();
});

test('host-local IPAM drops addresses outside a new podCIDR (Node registered again)', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-ipam-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const old = new HostLocalIpam(dir, 'node-2', '10.244.2.0/24');
  t.is(old.allocate('uid-a'), '10.244.2.2');
  const fresh = new HostLocalIpam(dir, 'node-2', '10.244.4.0/24');
  t.deepEqual([...fresh.allocations().keys()], []);
  t.is(fresh.allocate('uid-a'), '10.244.4.2');
});
