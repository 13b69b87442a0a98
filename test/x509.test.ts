/**
 * The lab PKI's certificates (control-plane/x509.ts), read back by two
 * decoders that are not podlab's: Node's X509Certificate (OpenSSL's parser
 * inside Node) and the openssl command (`x509 -text`, `verify`). Go's stricter
 * DER parser reads them in the lab tests, through kubectl.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { certificateSans, issueCertificate, KEY_USAGE, type CertificateRequest } from '../control-plane/x509.ts';
import { testWithProgram } from './helpers/tool.ts';

const OPENSSL = '/usr/bin/openssl';
const withOpenssl = testWithProgram('x509', OPENSSL, 'openssl cross-check', 'openssl');

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const at = (iso: string) => new Date(iso);

type Keys = { publicKey: KeyObject; privateKey: KeyObject };

function ca(keys: Keys = ec(), over: Partial<CertificateRequest> = {}): { pem: string; cert: X509Certificate; keys: Keys } {
  const pem = issueCertificate({
    commonName: 'podlab-ca',
    publicKey: keys.publicKey,
    serial: randomBytes(16),
    notBefore: at('2026-12-05T10:00:00Z'),
    notAfter: at('2036-12-02T10:00:00Z'),
    ca: true,
    keyUsage: [KEY_USAGE.digitalSignature, KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign],
    signingKey: keys.privateKey,
    ...over,
  });
  return { pem, cert: new X509Certificate(pem), keys };
}

function server(issuer: ReturnType<typeof ca>, hosts: string[], over: Partial<CertificateRequest> = {}): X509Certificate {
  return new X509Certificate(
    issueCertificate({
      commonName: 'kube-apiserver',
      publicKey: ec().publicKey,
      serial: randomBytes(16),
      notBefore: at('2026-12-05T10:00:00Z'),
      notAfter: at('2027-12-05T10:00:00Z'),
      ca: false,
      keyUsage: [KEY_USAGE.digitalSignature],
      serverAuth: true,
      hosts,
      issuer: issuer.cert,
      signingKey: issuer.keys.privateKey,
      ...over,
    }),
  );
}

test('a CA and a serving certificate: signed, chained, every name and address, the fields as written', (t) => {
  const root = ca();
  const leaf = server(root, ['127.0.0.1', 'localhost', '::1', 'fd00:10:96::1', '::ffff:10.96.0.1', 'kubernetes.default.svc']);
  t.true(root.cert.ca);
  t.false(leaf.ca);
  t.true(root.cert.verify(root.cert.publicKey), 'self-signed');
  t.true(leaf.verify(root.cert.publicKey), 'signed by the CA');
  t.true(leaf.checkIssued(root.cert));
  t.is(leaf.issuer, 'CN=podlab-ca');
  t.is(leaf.subject, 'CN=kube-apiserver');
  t.is(leaf.checkIP('127.0.0.1'), '127.0.0.1');
  t.is(leaf.checkIP('::1'), '::1');
  t.is(leaf.checkIP('fd00:10:96:0:0:0:0:1'), 'fd00:10:96:0:0:0:0:1');
  t.truthy(leaf.checkIP('::ffff:a60:1'), 'the dotted quad as its two groups');
  t.is(leaf.checkHost('kubernetes.default.svc'), 'kubernetes.default.svc');
  t.is(leaf.checkHost('example.com'), undefined);
  t.deepEqual(certificateSans(leaf), ['127.0.0.1', 'localhost', '::1', 'fd00:10:96::1', '::ffff:a60:1', 'kubernetes.default.svc']);
  t.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: serverAuth');
  t.is(new Date(leaf.validFrom).toISOString(), '2026-12-05T10:00:00.000Z');
  t.is(new Date(leaf.validTo).toISOString(), '2027-12-05T10:00:00.000Z');
  t.is(leaf.publicKey.asymmetricKeyType, 'ec');
  t.is(leaf.serialNumber.length, 32, '16 bytes');
  t.true(parseInt(leaf.serialNumber[0], 16) < 8, 'a positive serial');
});

test('an RSA CA (a lab made before) still signs: sha256WithRSAEncryption, deterministic', (t) => {
  const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const root = ca(keys);
  t.is(root.cert.publicKey.asymmetricKeyType, 'rsa');
  const req: CertificateRequest = {
    commonName: 'kube-apiserver',
    publicKey: ec().publicKey,
    serial: Buffer.alloc(16, 7),
    notBefore: at('2026-12-05T10:00:00Z'),
    notAfter: at('2027-12-05T10:00:00Z'),
    ca: false,
    keyUsage: [KEY_USAGE.digitalSignature],
    serverAuth: true,
    hosts: ['127.0.0.1'],
    issuer: root.cert,
    signingKey: keys.privateKey,
  };
  const pem = issueCertificate(req);
  t.true(new X509Certificate(pem).verify(root.cert.publicKey));
  t.is(issueCertificate(req), pem, 'PKCS#1 v1.5 signatures are deterministic, so is the whole certificate');
});

test('a signing key of another kind is refused with a typed error', (t) => {
  const ed = generateKeyPairSync('ed25519');
  const err = t.throws(() => ca(ed));
  t.is(err?.name, 'X509Error');
  t.regex(err?.message ?? '', /cannot sign with a ed25519 key/);
});

test('lengths past one and two bytes, and a date after 2049 (GeneralizedTime)', (t) => {
  const root = ca(ec(), { notAfter: at('2051-01-02T03:04:05Z') });
  t.is(new Date(root.cert.validTo).toISOString(), '2051-01-02T03:04:05.000Z');
  const many = Array.from({ length: 40 }, (_, i) => `node-${i}.podlab.example`);
  const leaf = server(root, many);
  t.true(leaf.raw.length > 1024, 'a SAN extension longer than 255 bytes');
  t.true(leaf.verify(root.cert.publicKey));
  t.deepEqual(certificateSans(leaf), many);
});

withOpenssl('openssl reads them: x509 -text shows the extensions, verify accepts the chain', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-x509-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const root = ca();
  const leaf = server(root, ['127.0.0.1', 'localhost', '::1']);
  fs.writeFileSync(path.join(dir, 'ca.crt'), root.pem);
  fs.writeFileSync(path.join(dir, 'apiserver.crt'), leaf.toString());
  const text = (f: string) => execFileSync(OPENSSL, ['x509', '-in', path.join(dir, f), '-noout', '-text'], { encoding: 'utf8' });
  const caText = text('ca.crt');
  for (const line of ['Version: 3 (0x2)', 'Signature Algorithm: ecdsa-with-SHA256', 'Issuer: CN = podlab-ca', 'Subject: CN = podlab-ca', 'NIST CURVE: P-256', 'X509v3 Basic Constraints: critical', 'CA:TRUE', 'X509v3 Key Usage: critical', 'Digital Signature, Certificate Sign, CRL Sign', 'X509v3 Subject Key Identifier'])
    t.true(caText.includes(line), `ca.crt: ${line}`);
  const leafText = text('apiserver.crt');
  for (const line of ['Subject: CN = kube-apiserver', 'CA:FALSE', 'TLS Web Server Authentication', 'X509v3 Authority Key Identifier', 'IP Address:127.0.0.1, DNS:localhost, IP Address:0:0:0:0:0:0:0:1'])
    t.true(leafText.includes(line), `apiserver.crt: ${line}`);
  t.true(/Key Usage: critical\n\s+Digital Signature\n/.test(leafText), 'the leaf signs only');
  // The leaf's authority key identifier is the CA's subject key identifier.
  const id = (s: string, label: string) => new RegExp(`${label}: ?\\n\\s+(?:keyid:)?([0-9A-F:]+)`).exec(s)?.[1];
  t.truthy(id(caText, 'X509v3 Subject Key Identifier'));
  t.is(id(leafText, 'X509v3 Authority Key Identifier'), id(caText, 'X509v3 Subject Key Identifier'));
  const verify = execFileSync(OPENSSL, ['verify', '-x509_strict', '-CAfile', path.join(dir, 'ca.crt'), path.join(dir, 'apiserver.crt')], { encoding: 'utf8' });
  t.is(verify.trim(), `${path.join(dir, 'apiserver.crt')}: OK`);
});
