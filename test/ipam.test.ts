/**
 * host-local IPAM (node-agent/ipam.ts): one file per address, as the CNI plugin
 * keeps them; what an agent restarted on the same directory finds, and the
 * round-robin that does not hand a just-freed address out again at once.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HostLocalIpam, IpamError } from '../node-agent/ipam.ts';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-ipam-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const files = (dir: string) => fs.readdirSync(path.join(dir, 'nodes', 'node-1', 'ipam', 'cbr0')).sort();

test('addresses are files holding their owner; a restarted agent finds them, and its round-robin goes on', (t) => {
  const dir = tmp(t);
  const a = new HostLocalIpam(dir, 'node-1', '10.244.1.0/24');
  t.is(a.allocate('uid-a'), '10.244.1.2');
  t.is(a.allocate('uid-b'), '10.244.1.3');
  t.is(a.allocate('uid-a'), '10.244.1.2', 'an owner keeps its address');
  t.deepEqual(files(dir), ['10.244.1.2', '10.244.1.3', 'last_reserved_ip.0']);
  t.is(fs.readFileSync(path.join(dir, 'nodes', 'node-1', 'ipam', 'cbr0', '10.244.1.3'), 'utf8'), 'uid-b\n');
  a.release('uid-a');
  t.is(a.allocate('uid-c'), '10.244.1.4', 'a freed address is not handed out again at once');
  // The agent restarts: what is on disk is what it holds.
  const b = new HostLocalIpam(dir, 'node-1', '10.244.1.0/24');
  t.deepEqual([...b.allocations()].sort(), [
    ['10.244.1.3', 'uid-b'],
    ['10.244.1.4', 'uid-c'],
  ]);
  t.is(b.find('uid-b'), '10.244.1.3');
  t.is(b.allocate('uid-d'), '10.244.1.5');
  // A pod rebuilt with its status.podIP claims exactly that address, unless another pod holds it.
  t.is(b.allocate('uid-e', '10.244.1.2'), '10.244.1.2');
  t.throws(() => b.allocate('uid-f', '10.244.1.3'), { instanceOf: IpamError, message: 'address 10.244.1.3 is already allocated to uid-b' });
  b.release('uid-b');
  t.false(files(dir).includes('10.244.1.3'));
  t.is(b.find('uid-b'), undefined);
});

test('a full range says so; an address freed is found again by the round-robin', (t) => {
  const dir = tmp(t);
  const ipam = new HostLocalIpam(dir, 'node-1', '10.244.1.0/29');
  // .0 is flannel.1's, .1 cni0's, .7 the broadcast: .2-.6 for pods.
  const got = ['a', 'b', 'c', 'd', 'e'].map((o) => ipam.allocate(o));
  t.deepEqual(got, ['10.244.1.2', '10.244.1.3', '10.244.1.4', '10.244.1.5', '10.244.1.6']);
  t.throws(() => ipam.allocate('f'), { instanceOf: IpamError, message: 'no free address left in 10.244.1.2-10.244.1.6' });
  ipam.release('c');
  t.is(ipam.allocate('f'), '10.244.1.4');
});
