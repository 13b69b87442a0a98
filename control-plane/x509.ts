/**
 * The X.509 certificates the lab's PKI issues (RFC 5280), encoded in DER by
 * hand and signed with Node's crypto: a CA and the apiserver's serving
 * certificate need a handful of fields, where a general library (node-forge)
 * is a megabyte of JavaScript that only signs with RSA. ECDSA P-256 keys,
 * which kubeadm offers too (`encryptionAlgorithm: ECDSA-P256`), take 0.1 ms
 * to generate against 120-350 ms for an RSA-2048 pair, two of which every
 * lab's start waited for. A CA key of either kind signs (a lab made before
 * keeps its RSA CA).
 *
 * Only what the lab issues is encoded; parsing is Node's (X509Certificate),
 * except the issuer's subject, which a new certificate must repeat byte for
 * byte (Go's chain building compares the raw names).
 */
import { createHash, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isoUtc } from '../common/utc-time.ts';
import { canonicalIpAddress, ipAddressBytes } from '../packet/ip-input.ts';

/** A certificate this module cannot issue: a CA whose DER it cannot walk, or a signing key of another kind. */
export class X509Error extends Error {
  override name = 'X509Error';
}

// ---------------------------------------------------------------- DER writer

function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const TRUE = Buffer.from([0x01, 0x01, 0xff]);
const NULL = Buffer.from([0x05, 0x00]);
/** [n] EXPLICIT (constructed, context-specific). */
const explicit = (n: number, body: Buffer): Buffer => tlv(0xa0 | n, body);

/** A non-negative INTEGER from big-endian magnitude bytes, in its minimal two's-complement form. */
function uint(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const m = bytes.subarray(i);
  return tlv(0x02, m[0] & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out = [40 * parts[0] + parts[1]];
  for (const p of parts.slice(2)) {
    const b = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) b.unshift(0x80 | (v & 0x7f));
    out.push(...b);
  }
  return tlv(0x06, Buffer.from(out));
}

function bitString(bytes: Buffer, unused = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), bytes]));
}

/** A named-bit BIT STRING (KeyUsage): trailing zero bits dropped, as DER requires. */
function namedBits(bits: number[]): Buffer {
  const top = Math.max(...bits);
  const bytes = Buffer.alloc((top >> 3) + 1);
  for (const b of bits) bytes[b >> 3] |= 0x80 >> (b & 7);
  return bitString(bytes, 7 - (top & 7));
}

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5), to the second. */
function time(d: Date): Buffer {
  const iso = isoUtc(d.getTime(), 0).replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  const year = d.getUTCFullYear();
  return year < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`, 'ascii')) : tlv(0x18, Buffer.from(`${iso}Z`, 'ascii'));
}

// ---------------------------------------------------------------- DER reader (the issuer's subject)

/** The element at `off`: where its body starts and ends. */
function element(der: Buffer, off: number): { tag: number; body: number; end: number } {
  const truncated = () => new X509Error('x509: truncated DER in the issuer certificate');
  if (off + 2 > der.length) throw truncated();
  const tag = der[off];
  let len = der[off + 1];
  let body = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n > 4 || body + n > der.length) throw truncated();
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[body + i];
    body += n;
  }
  if (body + len > der.length) throw truncated();
  return { tag, body, end: body + len };
}

/** The subject Name of a certificate, as encoded in it. */
function rawSubject(cert: X509Certificate): Buffer {
  const der = cert.raw;
  const tbs = element(der, element(der, 0).body);
  let at = tbs.body;
  if (der[at] === 0xa0) at = element(der, at).end; // version
  for (let i = 0; i < 4; i++) at = element(der, at).end; // serial, signature, issuer, validity
  return der.subarray(at, element(der, at).end);
}

/** The subjectPublicKey bits of a SubjectPublicKeyInfo (what a key identifier hashes: RFC 5280 4.2.1.2 (1)). */
function publicKeyBits(spki: Buffer): Buffer {
  const outer = element(spki, 0);
  const bits = element(spki, element(spki, outer.body).end);
  return spki.subarray(bits.body + 1, bits.end);
}

// ---------------------------------------------------------------- certificates

const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};

/** KeyUsage bits (RFC 5280 4.2.1.3). */
export const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [TRUE] : []), octets(value));
}

function signatureAlgorithm(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ec') return seq(oid(OID.ecdsaWithSha256));
  if (key.asymmetricKeyType === 'rsa') return seq(oid(OID.sha256WithRsa), NULL);
  throw new X509Error(`x509: cannot sign with a ${String(key.asymmetricKeyType)} key (EC or RSA)`);
}

function keyId(spki: Buffer): Buffer {
  return createHash('sha1').update(publicKeyBits(spki)).digest();
}

function subjectAltName(hosts: readonly string[]): Buffer {
  return seq(
    ...hosts.map((h) => {
      const ip = ipAddressBytes(h);
      return ip ? tlv(0x87, ip) : tlv(0x82, Buffer.from(h, 'ascii'));
    }),
  );
}

/** What a certificate says; the issuer is the certificate itself when none is given. */
export interface CertificateRequest {
  commonName: string;
  /** The certified key's public half. */
  publicKey: KeyObject;
  /** 16 random bytes, say: made positive and minimal here. */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  keyUsage: number[];
  serverAuth?: boolean;
  /** DNS names and IP addresses (subjectAltName). */
  hosts?: readonly string[];
  /** The signing CA; absent, the certificate is self-signed with `signingKey`. */
  issuer?: X509Certificate;
  signingKey: KeyObject;
}

/** The certificate, PEM-encoded. */
export function issueCertificate(r: CertificateRequest): string {
  const spki = r.publicKey.export({ type: 'spki', format: 'der' });
  const subject = seq(set(seq(oid(OID.commonName), utf8(r.commonName))));
  const issuerName = r.issuer ? rawSubject(r.issuer) : subject;
  const issuerSpki = r.issuer ? r.issuer.publicKey.export({ type: 'spki', format: 'der' }) : spki;
  const serial = Buffer.from(r.serial);
  serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and no leading zero to strip
  const exts = [
    extension(OID.basicConstraints, true, r.ca ? seq(TRUE) : seq()),
    extension(OID.keyUsage, true, namedBits(r.keyUsage)),
    ...(r.serverAuth ? [extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth)))] : []),
    extension(OID.subjectKeyIdentifier, false, octets(keyId(spki))),
    ...(r.issuer ? [extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, keyId(issuerSpki))))] : []),
    ...(r.hosts?.length ? [extension(OID.subjectAltName, false, subjectAltName(r.hosts))] : []),
  ];
  const algorithm = signatureAlgorithm(r.signingKey);
  const tbs = seq(explicit(0, uint(Buffer.from([2]))), uint(serial), algorithm, issuerName, seq(time(r.notBefore), time(r.notAfter)), subject, spki, explicit(3, seq(...exts)));
  return new X509Certificate(seq(tbs, algorithm, bitString(sign('sha256', tbs, r.signingKey)))).toString();
}

/** The DNS names and IP addresses a certificate is valid for (its subjectAltName). */
export function certificateSans(cert: X509Certificate): string[] {
  const out: string[] = [];
  for (const entry of (cert.subjectAltName ?? '').split(', ')) {
    const m = /^(DNS|IP Address):(.*)$/.exec(entry);
    if (m) out.push(m[1] === 'IP Address' ? canonicalIpAddress(m[2]) : m[2]);
  }
  return out;
}
