/**
 * The lab PKI and the authorizer, unit level: the CA signs a serving
 * certificate that Node's TLS verification accepts for every listed name;
 * node tokens verify only for their own name; the authorizer's decisions.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { authenticate, authorize, selfSubjectAccessReview, type Identity } from '../control-plane/auth.ts';
import { agentCredentials, adminCredentials, CredentialsError } from '../control-plane/credentials.ts';
import { agentAddress } from '../control-plane/pod-exec.ts';
import { controlSocketPath } from '../control-plane/node-control-protocol.ts';
import type { Node } from '../control-plane/types.ts';
import { certificateHosts, ensurePki, nodeToken, pkiFiles, verifyNodeToken, writeNodeTokenFile } from '../control-plane/pki.ts';
import { issueCertificate, KEY_USAGE } from '../control-plane/x509.ts';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-pki-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('ensurePki: a CA-signed serving certificate for every host; kept on restart, reissued for a new host', (t) => {
  const dir = tmp(t);
  const a = ensurePki(path.join(dir, 'pki'), ['127.0.0.1', 'localhost', 'apiserver']);
  const ca = new X509Certificate(a.ca);
  const cert = new X509Certificate(a.cert);
  t.true(ca.ca);
  t.true(cert.verify(ca.publicKey), 'signed by the lab CA');
  for (const c of [ca, cert]) t.like(c.publicKey.asymmetricKeyDetails, { namedCurve: 'prime256v1' }, 'ECDSA P-256');
  t.true(cert.checkIssued(ca));
  t.is(cert.checkHost('apiserver'), 'apiserver');
  t.is(cert.checkIP('127.0.0.1'), '127.0.0.1');
  t.is(cert.checkHost('example.com'), undefined);
  t.deepEqual(certificateHosts(a.cert).sort(), ['127.0.0.1', 'apiserver', 'localhost']);
  const again = ensurePki(path.join(dir, 'pki'), ['127.0.0.1']);
  t.is(again.cert, a.cert, 'nothing reissued when every host is covered');
  t.is(again.adminToken, a.adminToken);
  const wider = ensurePki(path.join(dir, 'pki'), ['10.250.0.10']);
  t.is(wider.ca, a.ca, 'the CA stays');
  t.not(wider.cert, a.cert);
  t.deepEqual(certificateHosts(wider.cert).sort(), ['10.250.0.10', '127.0.0.1', 'apiserver', 'localhost']);
  const f = pkiFiles(path.join(dir, 'pki'));
  for (const file of [f.caKey, f.serverKey, f.adminToken, f.nodeTokenKey]) t.is((fs.statSync(file).mode & 0o777).toString(8), '600', file);
  t.is((fs.statSync(f.dir).mode & 0o777).toString(8), '700');
});

test('ensurePki: a lab made with an RSA CA keeps it, and its new serving certificate is signed with it', (t) => {
  const dir = path.join(tmp(t), 'pki');
  const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const f = pkiFiles(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caPem = issueCertificate({ commonName: 'podlab-ca', publicKey: keys.publicKey, serial: Buffer.alloc(16, 1), notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000), ca: true, keyUsage: [KEY_USAGE.keyCertSign], signingKey: keys.privateKey });
  fs.writeFileSync(f.caCert, caPem);
  fs.writeFileSync(f.caKey, keys.privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
  const got = ensurePki(dir, ['127.0.0.1']);
  t.is(got.ca, caPem);
  const cert = new X509Certificate(got.cert);
  t.true(cert.verify(new X509Certificate(caPem).publicKey));
  t.is(cert.checkIP('127.0.0.1'), '127.0.0.1');
});

test('node tokens: each proves only its own name; forged or foreign-key tokens fail', (t) => {
  const dir = tmp(t);
  const creds = ensurePki(path.join(dir, 'pki'), ['127.0.0.1']);
  const other = ensurePki(path.join(dir, 'other'), ['127.0.0.1']);
  const tok = nodeToken(creds.nodeTokenKey, 'node-1');
  t.is(verifyNodeToken(creds.nodeTokenKey, tok), 'node-1');
  t.is(verifyNodeToken(creds.nodeTokenKey, tok.replace('node-1', 'node-2')), undefined);
  t.is(verifyNodeToken(other.nodeTokenKey, tok), undefined);
  t.is(verifyNodeToken(creds.nodeTokenKey, 'node.node-1.'), undefined);
  t.is(verifyNodeToken(creds.nodeTokenKey, creds.adminToken), undefined);
  const h = (token: string) => ({ authorization: `Bearer ${token}` });
  t.like(authenticate(h(tok), creds), { username: 'system:node:node-1', node: 'node-1' });
  t.like(authenticate(h(creds.adminToken), creds), { username: 'admin' });
  t.is(authenticate(h(other.adminToken), creds), undefined);
  t.is(authenticate({}, creds), undefined);
  t.is(authenticate({ authorization: `Basic ${creds.adminToken}` }, creds), undefined);
});

test('credentials: agents find their token file, or issue one from a shared key; the CLI finds the admin token', (t) => {
  const dir = tmp(t);
  const creds = ensurePki(path.join(dir, 'pki'), ['127.0.0.1']);
  t.deepEqual(adminCredentials(dir, {}), { token: creds.adminToken, ca: creds.ca.trim() });
  t.is(adminCredentials(dir, { PODLAB_TOKEN: 'x' }).token, 'x');
  const file = writeNodeTokenFile(path.join(dir, 'pki'), 'node-1');
  t.is(agentCredentials({ stateDir: dir, name: 'node-1', env: {} }).token, fs.readFileSync(file, 'utf8').trim());
  t.is(agentCredentials({ stateDir: dir, name: 'cnode', env: {} }).token, nodeToken(creds.nodeTokenKey, 'cnode'), 'issued from the shared key');
  t.is(agentCredentials({ stateDir: '/nonexistent', name: 'n', env: { PODLAB_PKI_DIR: path.join(dir, 'pki') } }).ca, creds.ca.trim());
  const e = t.throws(() => agentCredentials({ stateDir: '/nonexistent', name: 'n', env: {} }), { instanceOf: CredentialsError });
  t.regex(e?.message ?? '', /no token for node n/);
  t.throws(() => adminCredentials('/nonexistent', {}), { instanceOf: CredentialsError, message: /cannot read the admin token \/nonexistent\/pki\/admin\.token: ENOENT/ });
});

test('authorizer: admin everything; a node reads, changes only its own Node and the status of Pods bound to it', (t) => {
  const admin: Identity = { username: 'admin', uid: 'admin', groups: ['system:masters'] };
  const node: Identity = { username: 'system:node:node-1', uid: 'node:node-1', groups: ['system:nodes'], node: 'node-1' };
  const lookup = { podNodeName: (_ns: string, name: string) => (name === 'mine' ? 'node-1' : 'node-2') };
  const can = (who: Identity, verb: string, resource: string, extra: Record<string, string> = {}) => authorize(who, { verb, group: '', resource, ...extra }, lookup).allowed;
  t.true(can(admin, 'delete', 'namespaces'));
  t.true(can(node, 'watch', 'pods'));
  t.false(can(node, 'delete', 'pods', { namespace: 'default', name: 'mine' }));
  t.true(can(node, 'patch', 'nodes', { name: 'node-1', subresource: 'status' }));
  t.false(can(node, 'patch', 'nodes', { name: 'node-2' }));
  t.false(can(node, 'delete', 'nodes', { name: 'node-1' }));
  t.true(can(node, 'patch', 'pods', { subresource: 'status', namespace: 'default', name: 'mine' }));
  t.false(can(node, 'patch', 'pods', { subresource: 'status', namespace: 'default', name: 'theirs' }));
  t.false(can(node, 'update', 'pods', { namespace: 'default', name: 'mine' }));
  t.false(authorize(node, { verb: 'create', group: 'projectcalico.org', resource: 'bgppeers' }, lookup).allowed, 'a node cannot make nodes peer with someone else');
  t.true(authorize(node, { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-node-lease', name: 'node-1' }, lookup).allowed);
  t.false(authorize(node, { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-node-lease', name: 'node-2' }, lookup).allowed);
  // An ingress controller in one of the node's pods publishes its address, and only that.
  t.true(authorize(node, { verb: 'patch', group: 'networking.k8s.io', resource: 'ingresses', subresource: 'status', namespace: 'default', name: 'web' }, lookup).allowed);
  t.false(authorize(node, { verb: 'patch', group: 'networking.k8s.io', resource: 'ingresses', namespace: 'default', name: 'web' }, lookup).allowed);
  t.false(authorize(node, { verb: 'delete', group: 'networking.k8s.io', resource: 'ingresses', subresource: 'status', namespace: 'default', name: 'web' }, lookup).allowed);
  const review = selfSubjectAccessReview(node, { spec: { resourceAttributes: { verb: '*', resource: '*' } } }, lookup) as { status: { allowed: boolean } };
  t.false(review.status.allowed);
  t.throws(() => selfSubjectAccessReview(node, { spec: {} }, lookup), { message: /resourceAttributes or spec.nonResourceAttributes/ });
});

test('exec relay: the node agent at its local control socket, else at the kubelet endpoint its Node publishes', (t) => {
  const sock = controlSocketPath('/var/lib/podlab', 'node-2');
  const node = { metadata: { name: 'node-2' }, status: { addresses: [{ type: 'InternalIP', address: '172.30.0.4' }], daemonEndpoints: { kubeletEndpoint: { Port: 10250 } } } } as Node;
  t.is(agentAddress('/var/lib/podlab', 'node-2', node, (p) => p === sock), sock, 'a shared state directory wins (podlab up, netns labs)');
  t.is(agentAddress('/var/lib/podlab', 'node-2', node, () => false), 'tcp://172.30.0.4:10250', 'a compose lab: the Node InternalIP and kubelet port');
  t.is(agentAddress('/var/lib/podlab', 'node-2', { ...node, status: { addresses: node.status!.addresses } }, () => false), undefined, 'no --control-port: unreachable');
  t.is(agentAddress('/var/lib/podlab', 'node-2', undefined, () => false), undefined);
});
