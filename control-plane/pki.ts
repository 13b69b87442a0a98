/**
 * The lab's credentials, kept in one directory (`<stateDir>/pki` unless told
 * otherwise):
 *
 *   ca.crt, ca.key               the lab's own CA (ECDSA P-256, 10 years; a lab made before keeps its RSA one)
 *   apiserver.crt, apiserver.key the serving certificate, signed by the CA,
 *                                with every name and address the apiserver is reached by
 *   admin.token                  the bearer token of the one admin identity
 *   node-token.key               the HMAC key node tokens are derived from
 *   nodes/<name>.token           a node's token, written for the agents a launcher starts
 *
 * Keys come from Node's crypto and certificates from ./x509.ts; nothing
 * shells out to openssl. Files holding secrets are mode 0600 and the
 * directory 0700.
 *
 * A node token is `node.<name>.<mac>`, the mac an HMAC-SHA256 of the name
 * under node-token.key: the apiserver checks any node's token without a
 * table, and a launcher (or, in the compose lab, an agent that can read the
 * shared key) issues one for a node whose name is only known when it starts.
 */
import { createHmac, createPrivateKey, generateKeyPairSync, randomBytes, timingSafeEqual, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { certificateSans, issueCertificate, KEY_USAGE } from './x509.ts';

/** Paths of the files of a PKI directory. */
export interface PkiFiles {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminToken: string;
  nodeTokenKey: string;
}

/** The file layout of `dir`. */
export function pkiFiles(dir: string): PkiFiles {
  return {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    serverCert: path.join(dir, 'apiserver.crt'),
    serverKey: path.join(dir, 'apiserver.key'),
    adminToken: path.join(dir, 'admin.token'),
    nodeTokenKey: path.join(dir, 'node-token.key'),
  };
}

/** The default PKI directory of a state directory. */
export function defaultPkiDir(stateDir: string): string {
  return path.join(stateDir, 'pki');
}

/** What a server needs: its certificate chain and key, and the secrets tokens are checked against. */
export interface ServerCredentials {
  /** PEM of the CA (clients trust it; kubeconfig carries it). */
  ca: string;
  cert: string;
  key: string;
  adminToken: string;
  nodeTokenKey: Buffer;
}

const SECRET_MODE = 0o600;

function writeSecret(file: string, text: string): void {
  fs.writeFileSync(file, text, { mode: SECRET_MODE });
  fs.chmodSync(file, SECRET_MODE);
}

/** A new ECDSA P-256 pair, the private half as SEC 1 PEM (`EC PRIVATE KEY`, as kubeadm writes it). */
function newKeyPair(): { privateKey: KeyObject; publicKey: KeyObject; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, pem: privateKey.export({ type: 'sec1', format: 'pem' }).toString() };
}

const DAY_MS = 24 * 3600_000;

function makeCa(): { cert: string; key: string } {
  const kp = newKeyPair();
  const cert = issueCertificate({
    commonName: 'podlab-ca',
    publicKey: kp.publicKey,
    serial: randomBytes(16),
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 10 * 365 * DAY_MS),
    ca: true,
    keyUsage: [KEY_USAGE.digitalSignature, KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign],
    signingKey: kp.privateKey,
  });
  return { cert, key: kp.pem };
}

function makeServerCert(caCertPem: string, caKeyPem: string, hosts: string[]): { cert: string; key: string } {
  const kp = newKeyPair();
  const cert = issueCertificate({
    commonName: 'kube-apiserver',
    publicKey: kp.publicKey,
    serial: randomBytes(16),
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * DAY_MS),
    ca: false,
    keyUsage: [KEY_USAGE.digitalSignature],
    serverAuth: true,
    hosts,
    issuer: new X509Certificate(caCertPem),
    signingKey: createPrivateKey(caKeyPem),
  });
  return { cert, key: kp.pem };
}

/** The names and addresses the serving certificate covers for a listener on `host`. */
export function apiserverCertHosts(host: string, extra: string[] = []): string[] {
  const sans = [host, 'localhost', '127.0.0.1', ...extra];
  // A wildcard listener is reached by the machine's names too (the compose lab: `apiserver`).
  if (host === '0.0.0.0' || host === '::') sans.push(hostname(), 'apiserver');
  sans.push('kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local');
  return [...new Set(sans.filter((h) => h !== '0.0.0.0' && h !== '::'))];
}

/** The DNS names and IP addresses a certificate is valid for. */
export function certificateHosts(certPem: string): string[] {
  return certificateSans(new X509Certificate(certPem));
}

/**
 * Creates whatever of the PKI is missing in `dir` and returns the server's
 * credentials. An existing CA and tokens are kept (a restarted lab keeps its
 * kubeconfig valid); the serving certificate is reissued when it does not
 * cover every one of `hosts`.
 */
export function ensurePki(dir: string, hosts: string[]): ServerCredentials {
  const f = pkiFiles(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(f.caCert) || !fs.existsSync(f.caKey)) {
    const ca = makeCa();
    writeSecret(f.caKey, ca.key);
    fs.writeFileSync(f.caCert, ca.cert, { mode: 0o644 });
    fs.rmSync(f.serverCert, { force: true });
  }
  const caCert = fs.readFileSync(f.caCert, 'utf8');
  const caKey = fs.readFileSync(f.caKey, 'utf8');
  const wanted = [...new Set(hosts.filter(Boolean))];
  const current = fs.existsSync(f.serverCert) && fs.existsSync(f.serverKey) ? certificateHosts(fs.readFileSync(f.serverCert, 'utf8')) : undefined;
  if (!current || wanted.some((h) => !current.includes(h))) {
    const server = makeServerCert(caCert, caKey, [...new Set([...(current ?? []), ...wanted])]);
    writeSecret(f.serverKey, server.key);
    fs.writeFileSync(f.serverCert, server.cert, { mode: 0o644 });
  }
  if (!fs.existsSync(f.adminToken)) writeSecret(f.adminToken, `${randomBytes(32).toString('base64url')}\n`);
  if (!fs.existsSync(f.nodeTokenKey)) writeSecret(f.nodeTokenKey, `${randomBytes(32).toString('hex')}\n`);
  return {
    ca: caCert,
    cert: fs.readFileSync(f.serverCert, 'utf8'),
    key: fs.readFileSync(f.serverKey, 'utf8'),
    adminToken: fs.readFileSync(f.adminToken, 'utf8').trim(),
    nodeTokenKey: Buffer.from(fs.readFileSync(f.nodeTokenKey, 'utf8').trim(), 'hex'),
  };
}

function nodeMac(key: Buffer, name: string): string {
  return createHmac('sha256', key).update(`podlab-node:${name}`).digest('base64url');
}

/** The bearer token of node `name`. */
export function nodeToken(key: Buffer, name: string): string {
  return `node.${name}.${nodeMac(key, name)}`;
}

/** The node name a node token proves, or undefined when it is not a valid node token. */
export function verifyNodeToken(key: Buffer, token: string): string | undefined {
  if (!token.startsWith('node.')) return undefined;
  const dot = token.lastIndexOf('.');
  if (dot <= 'node.'.length) return undefined;
  const name = token.slice('node.'.length, dot);
  const got = Buffer.from(token.slice(dot + 1));
  const want = Buffer.from(nodeMac(key, name));
  return got.length === want.length && timingSafeEqual(got, want) ? name : undefined;
}

/** Reads a PKI directory's node-token key (for launchers that issue node tokens). */
export function readNodeTokenKey(dir: string): Buffer {
  return Buffer.from(fs.readFileSync(pkiFiles(dir).nodeTokenKey, 'utf8').trim(), 'hex');
}

/** Writes `nodes/<name>.token` (0600) for an agent to read; returns its path. */
export function writeNodeTokenFile(dir: string, name: string): string {
  const nodesDir = path.join(dir, 'nodes');
  fs.mkdirSync(nodesDir, { recursive: true, mode: 0o700 });
  const file = path.join(nodesDir, `${name}.token`);
  writeSecret(file, `${nodeToken(readNodeTokenKey(dir), name)}\n`);
  return file;
}

/** Constant-time string comparison for tokens. */
export function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
