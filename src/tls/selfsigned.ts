// Generated TLS certificates for gatehouse's "just give me HTTPS" mode: a local CA and a server
// certificate it signs, built from Node built-ins only: node:crypto makes the key pairs and
// signs, and a tiny DER encoder below assembles the X.509 v3 certificates (Node cannot create
// certificates itself). The server certificate is a proper leaf (CA:FALSE, serverAuth) because
// rustls/webpki clients refuse a CA certificate presented as a server certificate.

import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import { isIP } from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

/** Options for {@link generateSelfSignedCertificate}. */
export interface SelfSignedOptions {
  /** Subject and issuer common name. Default `gatehouse self-signed`. */
  commonName?: string
  /** DNS subjectAltNames (a leading `*.` wildcard is allowed). Default `localhost` plus the host name. */
  dnsNames?: string[]
  /** IP subjectAltNames, IPv4 or IPv6. Default `127.0.0.1` and `::1`. */
  ipAddresses?: string[]
  /** Validity in days from `now`. Default 365. */
  days?: number
  /** The clock to use; mainly for tests. Default `new Date()`. */
  now?: Date
}

/** A PEM certificate and its PKCS#8 PEM private key. */
export interface SelfSignedPem {
  certPem: string
  keyPem: string
}

/** Options for {@link ensureSelfSignedCertificate}. */
export interface EnsureSelfSignedOptions {
  /** The clock to use for the expiry check and for a new certificate. Default `new Date()`. */
  now?: Date
  /** Regenerate when the certificate expires within this many days. Default 30. */
  renewBeforeDays?: number
}

/** Where {@link ensureSelfSignedCertificate} put the files, and what it (re)generated. */
export interface EnsureSelfSignedResult {
  /** The served chain: the server certificate, then the local CA certificate. */
  certFile: string
  /** The server certificate's private key. */
  keyFile: string
  /** The local CA certificate alone (what a client's trust store needs). */
  caFile: string
  /** True when the server certificate was (re)issued. */
  created: boolean
  /** True when the local CA was (re)generated: clients must trust the new one. */
  caCreated: boolean
  /** True when a pre-CA, CA-style self-signed certificate was replaced. */
  replacedLegacy: boolean
}

const DEFAULT_COMMON_NAME = 'gatehouse self-signed'
const DEFAULT_DAYS = 365
const DEFAULT_CA_DAYS = 3650
const DEFAULT_IPS = ['127.0.0.1', '::1']
const DEFAULT_RENEW_BEFORE_DAYS = 30
const DAY_MS = 24 * 60 * 60 * 1000
// Backdated so a client whose clock is slightly behind ours still accepts a fresh certificate.
const BACKDATE_MS = 60 * 60 * 1000

const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const

// ---------------------------------------------------------------------------------------------
// DER encoding: just the handful of types a certificate needs.

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content])
}

const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items))
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items))
const octetString = (content: Buffer): Buffer => tlv(0x04, content)
const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'))
const booleanTrue = (): Buffer => tlv(0x01, Buffer.from([0xff]))
/** Context-specific constructed tag, i.e. `[n] EXPLICIT`. */
const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content)
/** Context-specific primitive tag, i.e. `[n] IMPLICIT` over a primitive type. */
const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content)

function bitString(content: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), content]))
}

/** INTEGER from unsigned big-endian bytes, made minimal and kept positive. */
function unsignedInteger(bytes: Buffer): Buffer {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  let body = bytes.subarray(start)
  // A set high bit would read as negative in two's complement.
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body])
  if (body.length === 0) body = Buffer.from([0])
  return tlv(0x02, body)
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number)
  const [first = 0, second = 0, ...rest] = arcs
  const out: number[] = []
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk = [arc & 0x7f]
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80)
    out.push(...chunk)
  }
  return tlv(0x06, Buffer.from(out))
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 (and before 1950). */
function time(d: Date): Buffer {
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0')
  const y = d.getUTCFullYear()
  const rest = `${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(`${pad(y % 100)}${rest}`, 'ascii'))
  return tlv(0x18, Buffer.from(`${pad(y, 4)}${rest}`, 'ascii'))
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  // DER omits a BOOLEAN that equals its DEFAULT (FALSE), so only a critical flag is encoded.
  return critical ? sequence(oid(id), booleanTrue(), octetString(value)) : sequence(oid(id), octetString(value))
}

/** Reads one TLV header; enough DER decoding to pull the key bits out of an SPKI. */
function readTlv(buf: Buffer, offset: number): { tag: number; start: number; end: number } {
  const tag = buf[offset]
  let len = buf[offset + 1]
  let start = offset + 2
  if (tag === undefined || len === undefined) throw new Error('truncated DER')
  if (len & 0x80) {
    const n = len & 0x7f
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] ?? 0)
    start += n
  }
  if (start + len > buf.length) throw new Error('truncated DER')
  return { tag, start, end: start + len }
}

/** The subjectPublicKey BIT STRING contents (minus the unused-bits byte) of a DER SPKI. */
function subjectPublicKeyBits(spki: Buffer): Buffer {
  const outer = readTlv(spki, 0)
  const algorithm = readTlv(spki, outer.start)
  const key = readTlv(spki, algorithm.end)
  if (outer.tag !== 0x30 || algorithm.tag !== 0x30 || key.tag !== 0x03) throw new Error('unexpected SPKI layout')
  return spki.subarray(key.start + 1, key.end)
}

// ---------------------------------------------------------------------------------------------
// subjectAltName entries.

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i

function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false
  const labels = name.split('.')
  // RFC 6125 wildcards: only as the whole left-most label.
  if (labels[0] === '*') labels.shift()
  return labels.length > 0 && labels.every((l) => DNS_LABEL.test(l))
}

/** IPv4 as 4 bytes, IPv6 as 16 bytes (RFC 5280 §4.2.1.6 iPAddress). */
function ipBytes(ip: string): Buffer {
  const family = isIP(ip)
  if (family === 4) return Buffer.from(ip.split('.').map(Number))
  // node:net accepts zone ids (fe80::1%eth0), which a certificate cannot carry.
  if (family !== 6 || ip.includes('%')) throw new Error(`invalid IP address for subjectAltName: ${ip}`)
  let text = ip
  const words: number[] = []
  // A trailing dotted quad (::ffff:192.0.2.1) stands for the last two 16-bit groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  const tail: number[] = []
  if (quad?.[1] !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = quad[1].split('.').map(Number)
    tail.push((a << 8) | b, (c << 8) | d)
    text = text.slice(0, -quad[1].length)
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1)
  }
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)))
  const gap = text.indexOf('::')
  if (gap === -1) {
    words.push(...parse(text), ...tail)
  } else {
    const head = parse(text.slice(0, gap))
    const rest = [...parse(text.slice(gap + 2)), ...tail]
    words.push(...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest)
  }
  if (words.length !== 8) throw new Error(`invalid IP address for subjectAltName: ${ip}`)
  const out = Buffer.alloc(16)
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2))
  return out
}

function defaultDnsNames(): string[] {
  const names = ['localhost']
  const host = os.hostname()
  if (host.toLowerCase() !== 'localhost' && isDnsName(host)) names.push(host)
  return names
}

// ---------------------------------------------------------------------------------------------
// Certificate generation.

/** Everything that differs between the certificates this module makes. */
interface TbsParts {
  issuer: Buffer
  subject: Buffer
  notBefore: Date
  notAfter: Date
  spki: Buffer
  extensions: Buffer[]
}

// ECDSA AlgorithmIdentifiers have no parameters field at all (RFC 5758 §3.2), not even NULL.
const ECDSA_WITH_SHA256 = (): Buffer => sequence(oid(OID.ecdsaWithSha256))

/** Assemble an X.509 v3 certificate around `parts` and sign it with `signingKey` (EC P-256). */
function signCertificate(parts: TbsParts, signingKey: crypto.KeyObject): string {
  // 16 random bytes with the top bit cleared (positive) and the next set (no leading zero to strip).
  const serial = crypto.randomBytes(16)
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40
  const tbs = sequence(
    explicit(0, unsignedInteger(Buffer.from([2]))), // version v3
    unsignedInteger(serial),
    ECDSA_WITH_SHA256(),
    parts.issuer,
    sequence(time(parts.notBefore), time(parts.notAfter)),
    parts.subject,
    parts.spki,
    explicit(3, sequence(...parts.extensions)),
  )
  // crypto.sign emits the DER Ecdsa-Sig-Value that X.509 expects.
  const signature = crypto.sign('sha256', tbs, signingKey)
  const der = sequence(tbs, ECDSA_WITH_SHA256(), bitString(signature))
  const base64 = der.toString('base64').replace(/.{1,64}/g, '$&\n')
  return `-----BEGIN CERTIFICATE-----\n${base64}-----END CERTIFICATE-----\n`
}

/** A fresh P-256 key pair, its DER SPKI and its RFC 5280 §4.2.1.2 method (1) key identifier. */
function newKey(): { privateKey: crypto.KeyObject; spki: Buffer; keyId: Buffer } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  return { privateKey, spki, keyId: keyIdOf(spki) }
}

/** SHA-1 over the subjectPublicKey bits (RFC 5280 §4.2.1.2 method (1)). */
function keyIdOf(spki: Buffer): Buffer {
  return crypto.createHash('sha1').update(subjectPublicKeyBits(spki)).digest()
}

const cnName = (commonName: string): Buffer => sequence(set(sequence(oid(OID.commonName), utf8String(commonName))))

function checkCommon(commonName: string, days: number, now: Date): void {
  if (commonName.length === 0) throw new Error('commonName must not be empty')
  if (!Number.isFinite(days) || days <= 0) throw new Error(`days must be a positive number, got ${days}`)
  if (Number.isNaN(now.getTime())) throw new Error('now is an invalid Date')
}

/** The subjectAltName GeneralNames for DNS names and IP addresses (validated, deduplicated). */
function generalNamesOf(dnsNamesIn: string[], ipAddressesIn: string[]): Buffer[] {
  const dnsNames = [...new Set(dnsNamesIn.map((n) => n.toLowerCase()))]
  for (const name of dnsNames) {
    // dNSName is an IA5String: internationalised names must arrive already in punycode.
    if (!isDnsName(name)) throw new Error(`invalid DNS name for subjectAltName: ${name}`)
  }
  const ipAddresses = [...new Set(ipAddressesIn.map(ipBytes).map((b) => b.toString('hex')))]
  return [...dnsNames.map((n) => implicitPrimitive(2, Buffer.from(n, 'ascii'))), ...ipAddresses.map((hex) => implicitPrimitive(7, Buffer.from(hex, 'hex')))]
}

/**
 * Generates an ECDSA P-256 key and a self-signed X.509 v3 certificate for it that is both its
 * own CA and a server certificate — for tests and tools that need one PEM to pass as `cert`
 * and as `ca`. gatehouse itself does not serve such a certificate any more: clients built on
 * rustls/webpki refuse a CA certificate as a server certificate, so the state directory holds
 * a local CA and a leaf it signed ({@link ensureSelfSignedCertificate}).
 *
 * The certificate is marked `CA:TRUE` with `keyCertSign` so that OpenSSL (and so Node) accepts
 * it as its own trust anchor when a client passes it in `ca`, as `openssl req -x509` does. It
 * carries `serverAuth`, matching subject/authority key identifiers, and a subjectAltName with
 * the given DNS names and IP addresses.
 *
 * @throws if a DNS name or IP address is malformed, `days` is not positive, or `now` is invalid.
 */
export function generateSelfSignedCertificate(opts: SelfSignedOptions = {}): SelfSignedPem {
  const commonName = opts.commonName ?? DEFAULT_COMMON_NAME
  const days = opts.days ?? DEFAULT_DAYS
  const now = opts.now ?? new Date()
  checkCommon(commonName, days, now)
  const generalNames = generalNamesOf(opts.dnsNames ?? defaultDnsNames(), opts.ipAddresses ?? DEFAULT_IPS)
  const { privateKey, spki, keyId } = newKey()
  const name = cnName(commonName)
  const extensions = [
    extension(OID.basicConstraints, true, sequence(booleanTrue())),
    // digitalSignature is bit 0 (0x80) and keyCertSign bit 5 (0x04); DER drops the two trailing zero bits.
    extension(OID.keyUsage, true, bitString(Buffer.from([0x84]), 2)),
    extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
    extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, keyId))),
  ]
  // An empty GeneralNames is invalid, so with no names there is no extension at all.
  if (generalNames.length > 0) extensions.push(extension(OID.subjectAltName, false, sequence(...generalNames)))
  const certPem = signCertificate({ issuer: name, subject: name, notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + days * DAY_MS), spki, extensions }, privateKey)
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
}

/** Options for {@link generateLocalCa}. */
export interface LocalCaOptions {
  /** Subject common name. Default `gatehouse local CA <8 random hex digits>`, so two installs' CAs never share a name. */
  commonName?: string
  /** Validity in days from `now`. Default 3650. */
  days?: number
  /** The clock to use; mainly for tests. Default `new Date()`. */
  now?: Date
}

/**
 * Generates the local CA that signs gatehouse's server certificate: ECDSA P-256, self-signed,
 * `CA:TRUE, pathlen:0` (it signs leaves only, never another CA) and keyUsage
 * `keyCertSign, cRLSign` — no serverAuth, so it can never be served itself.
 *
 * @throws if `days` is not positive, `now` is invalid or `commonName` is empty.
 */
export function generateLocalCa(opts: LocalCaOptions = {}): SelfSignedPem {
  const commonName = opts.commonName ?? `gatehouse local CA ${crypto.randomBytes(4).toString('hex')}`
  const days = opts.days ?? DEFAULT_CA_DAYS
  const now = opts.now ?? new Date()
  checkCommon(commonName, days, now)
  const { privateKey, spki, keyId } = newKey()
  const name = cnName(commonName)
  const extensions = [
    // cA TRUE, pathLenConstraint 0 (RFC 5280 §4.2.1.9).
    extension(OID.basicConstraints, true, sequence(booleanTrue(), unsignedInteger(Buffer.from([0])))),
    // keyCertSign is bit 5 (0x04), cRLSign bit 6 (0x02); one trailing zero bit dropped.
    extension(OID.keyUsage, true, bitString(Buffer.from([0x06]), 1)),
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
  ]
  const certPem = signCertificate({ issuer: name, subject: name, notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + days * DAY_MS), spki, extensions }, privateKey)
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
}

/** Options for {@link issueServerCertificate}. */
export interface ServerCertOptions {
  /** Subject common name (informational: clients match the subjectAltNames). Default `gatehouse`. */
  commonName?: string
  /** DNS subjectAltNames (a leading `*.` wildcard is allowed). Default `localhost` plus the host name. */
  dnsNames?: string[]
  /** IP subjectAltNames, IPv4 or IPv6. Default `127.0.0.1` and `::1`. */
  ipAddresses?: string[]
  /** Validity in days from `now`; never past the CA's own end. Default 365. */
  days?: number
  /** The clock to use; mainly for tests. Default `new Date()`. */
  now?: Date
}

/** The DER children of the constructed TLV whose contents span [start, end). */
function derChildren(buf: Buffer, start: number, end: number): { tag: number; from: number; start: number; end: number }[] {
  const out: { tag: number; from: number; start: number; end: number }[] = []
  for (let at = start; at < end; ) {
    const t = readTlv(buf, at)
    out.push({ ...t, from: at })
    at = t.end
  }
  return out
}

/** The subject Name of a DER certificate, byte for byte (the issuer of what it signs must match it exactly). */
function subjectNameDer(der: Buffer): Buffer {
  const cert = readTlv(der, 0)
  const tbs = readTlv(der, cert.start)
  const fields = derChildren(der, tbs.start, tbs.end)
  // version [0] is present in v3; then serial, signature, issuer, validity, subject.
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0
  const subject = fields[offset + 4]
  if (subject === undefined || subject.tag !== 0x30) throw new Error('unexpected certificate layout')
  return der.subarray(subject.from, subject.end)
}

/**
 * Issues a server (leaf) certificate signed by `ca`, with a fresh ECDSA P-256 key:
 * `CA:FALSE`, keyUsage `digitalSignature` (an ECDSA key signs the handshake; keyEncipherment
 * is for RSA key transport, which TLS 1.3 and ECDHE never use), extKeyUsage `serverAuth`,
 * subject/authority key identifiers, and the subjectAltNames — the shape webpki, rustls,
 * Go, Java and browsers require of a server certificate.
 *
 * @returns the leaf certificate alone (PEM) and its PKCS#8 key.
 * @throws TypeError when `ca` is not an EC P-256 CA certificate with its matching key.
 */
export function issueServerCertificate(ca: SelfSignedPem, opts: ServerCertOptions = {}): SelfSignedPem {
  const commonName = opts.commonName ?? 'gatehouse'
  const days = opts.days ?? DEFAULT_DAYS
  const now = opts.now ?? new Date()
  checkCommon(commonName, days, now)
  const caCert = new crypto.X509Certificate(ca.certPem)
  const caKey = crypto.createPrivateKey(ca.keyPem)
  if (!caCert.ca || !caCert.checkPrivateKey(caKey) || caKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new TypeError('issueServerCertificate needs an EC P-256 CA certificate and its own private key')
  }
  const generalNames = generalNamesOf(opts.dnsNames ?? defaultDnsNames(), opts.ipAddresses ?? DEFAULT_IPS)
  if (generalNames.length === 0) throw new Error('a server certificate needs at least one DNS name or IP address')
  const { privateKey, spki, keyId } = newKey()
  const caKeyId = keyIdOf(caCert.publicKey.export({ type: 'spki', format: 'der' }))
  const extensions = [
    // cA FALSE is the DEFAULT, so DER encodes it as an empty SEQUENCE (openssl prints CA:FALSE).
    extension(OID.basicConstraints, true, sequence()),
    // digitalSignature only: bit 0 (0x80), seven trailing zero bits dropped.
    extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7)),
    extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
    extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, caKeyId))),
    extension(OID.subjectAltName, false, sequence(...generalNames)),
  ]
  const notBefore = new Date(now.getTime() - BACKDATE_MS)
  // A leaf that outlives its issuer fails verification on the day the CA expires anyway.
  const notAfter = new Date(Math.min(now.getTime() + days * DAY_MS, Date.parse(caCert.validTo)))
  const certPem = signCertificate({ issuer: subjectNameDer(caCert.raw), subject: cnName(commonName), notBefore, notAfter, spki, extensions }, caKey)
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }
}

// ---------------------------------------------------------------------------------------------
// Persistence.

function fsyncDirBestEffort(dir: string): void {
  // Makes the rename durable; not supported everywhere (e.g. Windows), hence best effort.
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, 'r')
    fs.fsyncSync(fd)
  } catch {
    // ignore
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** Temp file in the same directory, fsync, rename over the target, fsync the directory. */
function writeFileAtomic(file: string, data: string, mode: number): void {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`)
  // 'wx' refuses to follow a pre-planted file or symlink at the temp name.
  const fd = fs.openSync(tmp, 'wx', mode)
  try {
    try {
      // The open mode is filtered by the umask; set it exactly.
      fs.fchmodSync(fd, mode)
      fs.writeFileSync(fd, data)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    throw err
  }
  fsyncDirBestEffort(dir)
}

/** The PEM and parsed form of a certificate file, or undefined when it is missing or unparsable. */
function readCert(file: string): { pem: string; cert: crypto.X509Certificate } | undefined {
  try {
    const pem = fs.readFileSync(file, 'utf8')
    // With a bundle, X509Certificate parses the first certificate: the leaf.
    return { pem, cert: new crypto.X509Certificate(pem) }
  } catch {
    return undefined
  }
}

function readKey(file: string): { pem: string; key: crypto.KeyObject } | undefined {
  try {
    const pem = fs.readFileSync(file, 'utf8')
    return { pem, key: crypto.createPrivateKey(pem) }
  } catch {
    return undefined
  }
}

/** Whether `cert` is valid at `now` and still `minDays` days after it. */
function validFor(cert: crypto.X509Certificate, now: Date, minDays: number): boolean {
  // Node 20 has no validToDate; validTo is OpenSSL's "Mon DD HH:MM:SS YYYY GMT", which Date parses.
  const validFrom = Date.parse(cert.validFrom)
  const validTo = Date.parse(cert.validTo)
  if (Number.isNaN(validFrom) || Number.isNaN(validTo)) return false
  return validFrom <= now.getTime() && validTo - now.getTime() >= minDays * DAY_MS
}

/** The local CA in the state directory, when it can go on signing leaves. */
function usableCa(caFile: string, caKeyFile: string, now: Date, minDays: number): SelfSignedPem | undefined {
  const c = readCert(caFile)
  const k = readKey(caKeyFile)
  if (c === undefined || k === undefined) return undefined
  if (!c.cert.ca || !c.cert.checkPrivateKey(k.key) || k.key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return undefined
  if (!validFor(c.cert, now, minDays)) return undefined
  return { certPem: c.pem, keyPem: k.pem }
}

/** Whether the served chain is a current leaf of `ca` (followed by `ca`), with its key, covering the default names. */
function usableLeaf(certFile: string, keyFile: string, ca: SelfSignedPem, now: Date, renewBeforeDays: number): boolean {
  const c = readCert(certFile)
  const k = readKey(keyFile)
  if (c === undefined || k === undefined) return false
  const caCert = new crypto.X509Certificate(ca.certPem)
  const leaf = c.cert
  if (leaf.ca || !c.pem.endsWith(ca.certPem) || !leaf.checkIssued(caCert) || !leaf.verify(caCert.publicKey) || !leaf.checkPrivateKey(k.key)) return false
  if (!validFor(leaf, now, renewBeforeDays)) return false
  // A renamed host (a new container) gets a leaf that covers its new name; the CA stays.
  return defaultDnsNames().every((n) => leaf.checkHost(n) !== undefined) && DEFAULT_IPS.every((ip) => leaf.checkIP(ip) !== undefined)
}

/**
 * Makes sure the state directory holds gatehouse's generated certificates, and returns their
 * paths:
 *
 * - `<stateDir>/tls/ca.crt` and `ca.key`: a local CA ({@link generateLocalCa}), valid 10 years;
 * - `<stateDir>/tls/self-signed.crt`: the served chain, a server certificate signed by that CA
 *   ({@link issueServerCertificate}) followed by the CA certificate, and `self-signed.key`, the
 *   server certificate's key. The old names stay, so `curl --cacert <stateDir>/tls/self-signed.crt`
 *   and `NODE_EXTRA_CA_CERTS=…/self-signed.crt` keep working: the file holds the CA.
 *
 * The CA is kept while it is valid for a whole server certificate's life plus `renewBeforeDays`;
 * the server certificate is reissued by the same CA (clients that trust the CA notice nothing)
 * when it is missing, unparsable, not signed by the CA, does not match its key, is not yet valid,
 * expires within `renewBeforeDays` (default 30) or does not cover `localhost`, the host name,
 * `127.0.0.1` and `::1`. A state directory from before the CA existed (its `self-signed.crt` is
 * itself a CA certificate, which rustls/webpki clients refuse to accept from a server) is
 * replaced once: `replacedLegacy` says so, and clients must trust the new file.
 *
 * Directories are created 0700, keys written 0600 and certificates 0644, each through an
 * atomic temp-file-and-rename, key before certificate.
 */
export function ensureSelfSignedCertificate(stateDir: string, opts: EnsureSelfSignedOptions = {}): EnsureSelfSignedResult {
  const now = opts.now ?? new Date()
  const renewBeforeDays = opts.renewBeforeDays ?? DEFAULT_RENEW_BEFORE_DAYS
  if (!Number.isFinite(renewBeforeDays) || renewBeforeDays < 0) {
    throw new Error(`renewBeforeDays must be a non-negative number, got ${renewBeforeDays}`)
  }
  const dir = path.join(stateDir, 'tls')
  const certFile = path.join(dir, 'self-signed.crt')
  const keyFile = path.join(dir, 'self-signed.key')
  const caFile = path.join(dir, 'ca.crt')
  const caKeyFile = path.join(dir, 'ca.key')
  const result = (created: boolean, caCreated: boolean, replacedLegacy: boolean): EnsureSelfSignedResult => ({ certFile, keyFile, caFile, created, caCreated, replacedLegacy })

  let ca = usableCa(caFile, caKeyFile, now, DEFAULT_DAYS + renewBeforeDays)
  if (ca !== undefined && usableLeaf(certFile, keyFile, ca, now, renewBeforeDays)) return result(false, false, false)

  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  let caCreated = false
  let replacedLegacy = false
  if (ca === undefined) {
    // Without a CA of ours, a parsable self-signed.crt that is itself a CA is the pre-CA layout.
    replacedLegacy = readCert(certFile)?.cert.ca === true && !fs.existsSync(caFile)
    ca = generateLocalCa({ now })
    // Key first: a crash in between leaves a mismatched pair, which the next call detects and replaces.
    writeFileAtomic(caKeyFile, ca.keyPem, 0o600)
    writeFileAtomic(caFile, ca.certPem, 0o644)
    caCreated = true
  }
  const leaf = issueServerCertificate(ca, { now })
  writeFileAtomic(keyFile, leaf.keyPem, 0o600)
  writeFileAtomic(certFile, leaf.certPem + ca.certPem, 0o644)
  return result(true, caCreated, replacedLegacy)
}
