/**
 * The lab's credentials, kept in one directory (`<stateDir>/pki` unless told
 * otherwise):
 *
 *   ca.crt, ca.key               the lab's own CA (RSA 2048, 10 years)
 *   apiserver.crt, apiserver.key the serving certificate, signed by the CA,
 *                                with every name and address the apiserver is reached by
 *   admin.token                  the bearer token of the one admin identity
 *   node-token.key               the HMAC key node tokens are derived from
 *   nodes/<name>.token           a node's token, written for the agents a launcher starts
 *
 * Certificates are made with node-forge (keys with Node's own crypto, which
 * forge defers to); nothing shells out to openssl. Files holding secrets are
 * mode 0600 and the directory 0700.
 *
 * A node token is `node.<name>.<mac>`, the mac an HMAC-SHA256 of the name
 * under node-token.key: the apiserver checks any node's token without a
 * table, and a launcher (or, in the compose lab, an agent that can read the
 * shared key) issues one for a node whose name is only known when it starts.
 */
import { constants, createHmac, createPrivateKey, generateKeyPairSync, privateEncrypt, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import type forgeModule from 'node-forge';

// node-forge is a megabyte of CommonJS run at load: only the processes that
// issue or read certificates (the launcher, the apiserver) load it, when they
// first do, and through require, which spares them Node's CommonJS lexer (a
// WebAssembly module that an ESM import of CommonJS compiles, some 8 MB RSS).
// Node agents only read their token and CA from this module.
let forgeLoaded: typeof forgeModule | undefined;
const forge = (): typeof forgeModule => (forgeLoaded ??= createRequire(import.meta.url)('node-forge') as typeof forgeModule);

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

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017, 9.2 note 1); the digest follows. */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * A key forge's `cert.sign` can use, whose RSA operation is Node's (native)
 * rather than forge's JavaScript big integers: forge hands it the SHA-256 of
 * the to-be-signed certificate, and the signature is the PKCS#1 v1.5 one forge
 * would compute. Signing two certificates in JavaScript took ~0.4 s of every
 * lab's start.
 */
function nativeSigner(key: KeyObject): forgeModule.pki.rsa.PrivateKey {
  const sign = (md: forgeModule.md.MessageDigest): string => {
    const digest = Buffer.from(md.digest().getBytes(), 'binary');
    return privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([SHA256_DIGEST_INFO, digest])).toString('binary');
  };
  return { sign } as unknown as forgeModule.pki.rsa.PrivateKey;
}

function newKeyPair(): { privateKey: forgeModule.pki.rsa.PrivateKey; publicKey: forgeModule.pki.rsa.PublicKey; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  return { privateKey: nativeSigner(privateKey), publicKey: forge().pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()), pem };
}

function serial(): string {
  // A positive serial: the top bit of the first byte clear.
  const b = randomBytes(16);
  b[0] &= 0x7f;
  return b.toString('hex');
}

function makeCa(): { cert: string; key: string } {
  const kp = newKeyPair();
  const cert = forge().pki.createCertificate();
  cert.publicKey = kp.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 10 * 365 * 24 * 3600_000);
  const attrs = [{ name: 'commonName', value: 'podlab-ca' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(kp.privateKey, forge().md.sha256.create());
  return { cert: forge().pki.certificateToPem(cert), key: kp.pem };
}

function makeServerCert(caCertPem: string, caKeyPem: string, hosts: string[]): { cert: string; key: string } {
  const caCert = forge().pki.certificateFromPem(caCertPem);
  const caKey = nativeSigner(createPrivateKey(caKeyPem));
  const kp = newKeyPair();
  const cert = forge().pki.createCertificate();
  cert.publicKey = kp.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 365 * 24 * 3600_000);
  cert.setSubject([{ name: 'commonName', value: 'kube-apiserver' }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })) },
  ]);
  cert.sign(caKey, forge().md.sha256.create());
  return { cert: forge().pki.certificateToPem(cert), key: kp.pem };
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
  const cert = forge().pki.certificateFromPem(certPem);
  // node-forge types an extension as a bare object; subjectAltName's fields are these.
  const ext: { altNames?: { type: number; ip?: string; value?: string }[] } | undefined = cert.getExtension('subjectAltName');
  return (ext?.altNames ?? []).map((a) => (a.type === 7 ? (a.ip ?? '') : (a.value ?? ''))).filter(Boolean);
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
