import * as assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as https from 'node:https'
import type { AddressInfo } from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as tls from 'node:tls'

import { ensureSelfSignedCertificate, generateLocalCa, generateSelfSignedCertificate, issueServerCertificate } from '../../src/tls/selfsigned.ts'

// The PKCS#8 PEM header, assembled so the source holds no literal private-key marker.
const PKCS8_PEM_START = new RegExp(`^-----BEGIN ${'PRIVATE'} KEY-----\\n`)

const DAY_MS = 24 * 60 * 60 * 1000
const HOUR_MS = 60 * 60 * 1000

/** X509Certificate dates have whole-second precision. */
const truncateToSecond = (ms: number): number => Math.floor(ms / 1000) * 1000

/** The SHA-1 of the subjectPublicKey bits, computed independently of the module under test. */
function expectedKeyId(cert: crypto.X509Certificate): string {
  // For P-256 the uncompressed point is the last 65 bytes of the SPKI.
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' })
  return crypto.createHash('sha1').update(spki.subarray(spki.length - 65)).digest('hex')
}

void describe('generateSelfSignedCertificate', () => {
  void it('produces a valid, self-signed P-256 certificate with the default names', () => {
    const now = new Date('2030-03-04T05:06:07.890Z')
    const { certPem, keyPem } = generateSelfSignedCertificate({ now })
    const cert = new crypto.X509Certificate(certPem)

    assert.equal(cert.subject, 'CN=gatehouse self-signed')
    assert.equal(cert.issuer, cert.subject)
    assert.equal(cert.ca, true)
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']) // Node's keyUsage is the extKeyUsage list
    assert.ok(cert.checkIssued(cert))
    assert.ok(cert.verify(cert.publicKey), 'signature verifies against its own key')

    assert.match(keyPem, PKCS8_PEM_START)
    const key = crypto.createPrivateKey(keyPem)
    assert.equal(key.asymmetricKeyType, 'ec')
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1')
    assert.ok(cert.checkPrivateKey(key))

    const sans = (cert.subjectAltName ?? '').split(', ')
    assert.ok(sans.includes('DNS:localhost'), cert.subjectAltName)
    assert.ok(sans.includes('IP Address:127.0.0.1'), cert.subjectAltName)
    assert.ok(sans.includes('IP Address:0:0:0:0:0:0:0:1'), cert.subjectAltName)

    assert.equal(Date.parse(cert.validFrom), truncateToSecond(now.getTime() - HOUR_MS))
    assert.equal(Date.parse(cert.validTo), truncateToSecond(now.getTime() + 365 * DAY_MS))

    // 16 bytes, positive (top bit clear), no leading zero byte.
    assert.match(cert.serialNumber, /^[4-7][0-9A-F]{31}$/)
  })

  void it('encodes key identifiers, key usage and basic constraints as OpenSSL expects', () => {
    const cert = new crypto.X509Certificate(generateSelfSignedCertificate().certPem)
    const keyId = expectedKeyId(cert)
    const der = cert.raw.toString('hex')
    // subjectKeyIdentifier: OID 2.5.29.14, OCTET STRING { OCTET STRING keyId }
    assert.ok(der.includes(`0603551d0e04160414${keyId}`), 'SKI is SHA-1 of the public key bits')
    // authorityKeyIdentifier: OID 2.5.29.35, OCTET STRING { SEQUENCE { [0] keyId } }
    assert.ok(der.includes(`0603551d23041830168014${keyId}`), 'AKI repeats the SKI')
    // keyUsage critical: digitalSignature + keyCertSign
    assert.ok(der.includes('0603551d0f0101ff040403020284'))
    // basicConstraints critical: CA:TRUE, no path length
    assert.ok(der.includes('0603551d130101ff040530030101ff'))
  })

  void it('uses the requested names, with IPv6 written out in full', () => {
    const { certPem } = generateSelfSignedCertificate({
      commonName: 'proxy.internal',
      dnsNames: ['Proxy.Internal', '*.svc.example'],
      ipAddresses: ['10.1.2.3', '2001:db8::1', '::ffff:192.0.2.1', 'fe80::'],
      days: 7,
    })
    const cert = new crypto.X509Certificate(certPem)
    assert.equal(cert.subject, 'CN=proxy.internal')
    assert.deepEqual((cert.subjectAltName ?? '').split(', '), [
      'DNS:proxy.internal',
      'DNS:*.svc.example',
      'IP Address:10.1.2.3',
      'IP Address:2001:DB8:0:0:0:0:0:1',
      'IP Address:0:0:0:0:0:FFFF:C000:201',
      'IP Address:FE80:0:0:0:0:0:0:0',
    ])
    assert.ok(cert.checkHost('proxy.internal'))
    assert.ok(cert.checkHost('a.svc.example'))
    assert.ok(cert.checkIP('2001:db8::1'))
    assert.ok(cert.checkIP('10.1.2.3'))
    assert.equal(cert.checkIP('10.1.2.4'), undefined)
  })

  void it('switches from UTCTime to GeneralizedTime at 2050', () => {
    const now = new Date('2049-12-01T00:00:00Z')
    const cert = new crypto.X509Certificate(generateSelfSignedCertificate({ now, days: 60 }).certPem)
    // A UTCTime could not say 2050 (it would read back as 1950).
    assert.equal(Date.parse(cert.validTo), Date.parse('2050-01-30T00:00:00Z'))
    assert.equal(Date.parse(cert.validFrom), Date.parse('2049-11-30T23:00:00Z'))
    const der = cert.raw.toString('latin1')
    assert.ok(der.includes('\x17\x0d491130230000Z'), 'notBefore is a 13-byte UTCTime')
    assert.ok(der.includes('\x18\x0f20500130000000Z'), 'notAfter is a 15-byte GeneralizedTime')
  })

  void it('makes a fresh key and serial every time', () => {
    const a = new crypto.X509Certificate(generateSelfSignedCertificate().certPem)
    const b = new crypto.X509Certificate(generateSelfSignedCertificate().certPem)
    assert.notEqual(a.serialNumber, b.serialNumber)
    assert.notEqual(a.fingerprint256, b.fingerprint256)
  })

  void it('rejects malformed input', () => {
    assert.throws(() => generateSelfSignedCertificate({ ipAddresses: ['999.1.1.1'] }), /invalid IP/)
    assert.throws(() => generateSelfSignedCertificate({ ipAddresses: ['fe80::1%eth0'] }), /invalid IP/)
    assert.throws(() => generateSelfSignedCertificate({ dnsNames: ['bad_name.example'] }), /invalid DNS/)
    assert.throws(() => generateSelfSignedCertificate({ dnsNames: ['a.*.example'] }), /invalid DNS/)
    assert.throws(() => generateSelfSignedCertificate({ dnsNames: ['bücher.example'] }), /invalid DNS/)
    assert.throws(() => generateSelfSignedCertificate({ days: 0 }), /days/)
    assert.throws(() => generateSelfSignedCertificate({ now: new Date(NaN) }), /invalid Date/)
  })
})

void describe('a self-signed certificate in a real TLS handshake', () => {
  const { certPem, keyPem } = generateSelfSignedCertificate()
  let server: https.Server
  let port = 0

  before(async () => {
    server = https.createServer({ cert: certPem, key: keyPem }, (_req, res) => res.end('hello'))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', resolve)
    })
    port = (server.address() as AddressInfo).port
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  function get(options: https.RequestOptions): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/', agent: false, ...options }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (body += chunk))
        res.on('end', () => resolve(body))
        res.on('error', reject)
      })
      req.on('error', reject)
    })
  }

  void it('is trusted via ca when the client asks for localhost', async () => {
    assert.equal(await get({ ca: certPem, servername: 'localhost' }), 'hello')
  })

  void it('is trusted via ca when the client connects to the IP (identity by IP SAN)', async () => {
    assert.equal(await get({ ca: certPem }), 'hello')
  })

  void it('verifies with tls.connect too', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: certPem, servername: 'localhost' })
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve)
        socket.once('error', reject)
      })
      assert.equal(socket.authorized, true)
      assert.equal(socket.getPeerX509Certificate()?.fingerprint256, new crypto.X509Certificate(certPem).fingerprint256)
    } finally {
      socket.destroy()
    }
  })

  void it('is rejected by a client without the ca', async () => {
    await assert.rejects(get({ servername: 'localhost' }), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT')
      return true
    })
  })

  void it('is rejected when the client trusts a different self-signed certificate', async () => {
    const other = generateSelfSignedCertificate().certPem
    await assert.rejects(get({ ca: other, servername: 'localhost' }), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT')
      return true
    })
  })

  void it('is rejected for a name it does not carry', async () => {
    await assert.rejects(get({ ca: certPem, servername: 'example.com' }), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
      return true
    })
  })
})

void describe('ensureSelfSignedCertificate', () => {
  let tmp = ''
  let caseNo = 0
  const posix = process.platform !== 'win32'

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-'))
  })

  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  /** A fresh, not-yet-existing state directory (nested, to exercise recursive mkdir). */
  const stateDir = (): string => path.join(tmp, `case-${++caseNo}`, 'state')

  function readPair(certFile: string, keyFile: string): { cert: crypto.X509Certificate; certPem: string; keyPem: string } {
    const certPem = fs.readFileSync(certFile, 'utf8')
    const keyPem = fs.readFileSync(keyFile, 'utf8')
    return { cert: new crypto.X509Certificate(certPem), certPem, keyPem }
  }

  /** Plants a pair in `<dir>/tls` as if an earlier run had written it. */
  function plant(dir: string, certPem: string, keyPem: string, names = ['self-signed.crt', 'self-signed.key']): void {
    fs.mkdirSync(path.join(dir, 'tls'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'tls', names[0] as string), certPem)
    fs.writeFileSync(path.join(dir, 'tls', names[1] as string), keyPem)
  }

  void it('creates a local CA and a leaf it signed, with tight permissions, then reuses them byte for byte', () => {
    const dir = stateDir()
    const first = ensureSelfSignedCertificate(dir)
    assert.equal(first.created, true)
    assert.equal(first.caCreated, true)
    assert.equal(first.replacedLegacy, false)
    assert.equal(first.certFile, path.join(dir, 'tls', 'self-signed.crt'))
    assert.equal(first.keyFile, path.join(dir, 'tls', 'self-signed.key'))
    assert.equal(first.caFile, path.join(dir, 'tls', 'ca.crt'))

    const { cert, certPem, keyPem } = readPair(first.certFile, first.keyFile)
    const caPem = fs.readFileSync(first.caFile, 'utf8')
    const ca = new crypto.X509Certificate(caPem)
    assert.equal(cert.ca, false, 'the served certificate is a leaf')
    assert.equal(ca.ca, true)
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'the leaf is signed by the CA')
    assert.ok(certPem.endsWith(caPem), 'self-signed.crt is the chain: leaf, then the CA (so --cacert self-signed.crt trusts the CA)')
    assert.equal(certPem.match(/BEGIN CERTIFICATE/g)?.length, 2)
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(keyPem)))
    assert.ok(ca.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(path.join(dir, 'tls', 'ca.key'), 'utf8'))))
    assert.match(keyPem, PKCS8_PEM_START)
    assert.ok((cert.subjectAltName ?? '').includes('DNS:localhost'))
    if (posix) {
      assert.equal(fs.statSync(first.keyFile).mode & 0o777, 0o600)
      assert.equal(fs.statSync(path.join(dir, 'tls', 'ca.key')).mode & 0o777, 0o600)
      assert.equal(fs.statSync(first.certFile).mode & 0o777, 0o644)
      assert.equal(fs.statSync(first.caFile).mode & 0o777, 0o644)
      assert.equal(fs.statSync(path.dirname(first.keyFile)).mode & 0o777, 0o700 & ~process.umask())
    }
    // Atomic writes leave no temp files behind.
    assert.deepEqual(fs.readdirSync(path.dirname(first.certFile)).sort(), ['ca.crt', 'ca.key', 'self-signed.crt', 'self-signed.key'])

    const second = ensureSelfSignedCertificate(dir)
    assert.deepEqual(second, { ...first, created: false, caCreated: false })
    assert.equal(fs.readFileSync(second.certFile, 'utf8'), certPem)
    assert.equal(fs.readFileSync(second.keyFile, 'utf8'), keyPem)
    assert.equal(fs.readFileSync(second.caFile, 'utf8'), caPem)
  })

  void it('replaces the old CA-style self-signed certificate once, keeping the file names', () => {
    const dir = stateDir()
    const old = generateSelfSignedCertificate()
    plant(dir, old.certPem, old.keyPem)

    const r = ensureSelfSignedCertificate(dir)
    assert.deepEqual([r.created, r.caCreated, r.replacedLegacy], [true, true, true])
    const { cert, certPem, keyPem } = readPair(r.certFile, r.keyFile)
    assert.notEqual(certPem, old.certPem)
    assert.notEqual(keyPem, old.keyPem, 'the old key is gone')
    assert.equal(cert.ca, false)

    // Once only: the next start keeps the new files.
    const again = ensureSelfSignedCertificate(dir)
    assert.deepEqual([again.created, again.caCreated, again.replacedLegacy], [false, false, false])
    assert.equal(fs.readFileSync(r.certFile, 'utf8'), certPem)
  })

  void it('renews a leaf that expires within renewBeforeDays with the same CA', () => {
    const dir = stateDir()
    const first = ensureSelfSignedCertificate(dir, { now: new Date(Date.now() - 355 * DAY_MS) }) // leaf expires in 10 days
    const caPem = fs.readFileSync(first.caFile, 'utf8')
    const oldLeaf = fs.readFileSync(first.certFile, 'utf8')

    // 10 days left is fine when only 5 are required...
    assert.equal(ensureSelfSignedCertificate(dir, { renewBeforeDays: 5 }).created, false)

    // ...but not with the default 30.
    const result = ensureSelfSignedCertificate(dir)
    assert.deepEqual([result.created, result.caCreated], [true, false])
    const { cert, certPem, keyPem } = readPair(result.certFile, result.keyFile)
    assert.notEqual(certPem, oldLeaf)
    assert.equal(fs.readFileSync(result.caFile, 'utf8'), caPem, 'clients that trust the CA notice nothing')
    assert.ok(cert.checkIssued(new crypto.X509Certificate(caPem)))
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(keyPem)))
    assert.ok(Date.parse(cert.validTo) > Date.now() + 360 * DAY_MS)
  })

  void it('judges expiry by the now option, and replaces a CA that cannot outlive a new leaf', () => {
    const dir = stateDir()
    assert.equal(ensureSelfSignedCertificate(dir).created, true)
    assert.equal(ensureSelfSignedCertificate(dir, { now: new Date(Date.now() + 300 * DAY_MS) }).created, false)
    const r = ensureSelfSignedCertificate(dir, { now: new Date(Date.now() + 340 * DAY_MS) })
    assert.deepEqual([r.created, r.caCreated], [true, false])
    // The CA is valid 10 years; within a leaf's life (+30 days) of its end, a new one is made.
    assert.equal(ensureSelfSignedCertificate(dir, { now: new Date(Date.now() + (3650 - 380) * DAY_MS) }).caCreated, true)
  })

  void it('reissues a leaf whose key does not match, or that another CA signed', () => {
    const dir = stateDir()
    const first = ensureSelfSignedCertificate(dir)
    const ca = fs.readFileSync(first.caFile, 'utf8')
    fs.writeFileSync(first.keyFile, generateSelfSignedCertificate().keyPem)
    const r = ensureSelfSignedCertificate(dir)
    assert.deepEqual([r.created, r.caCreated], [true, false])
    const { cert, keyPem } = readPair(r.certFile, r.keyFile)
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(keyPem)))
    if (posix) assert.equal(fs.statSync(r.keyFile).mode & 0o777, 0o600, 'rewritten key is 0600 again')

    const otherCa = generateLocalCa()
    const foreign = issueServerCertificate(otherCa)
    fs.writeFileSync(r.certFile, foreign.certPem + ca)
    fs.writeFileSync(r.keyFile, foreign.keyPem)
    const r2 = ensureSelfSignedCertificate(dir)
    assert.equal(r2.created, true)
    assert.ok(new crypto.X509Certificate(fs.readFileSync(r2.certFile, 'utf8')).checkIssued(new crypto.X509Certificate(ca)))
  })

  void it('replaces an unparsable certificate, a lone key, and a CA whose key does not match', () => {
    const garbled = stateDir()
    plant(garbled, '-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n', generateSelfSignedCertificate().keyPem)
    assert.equal(ensureSelfSignedCertificate(garbled).created, true)
    assert.equal(ensureSelfSignedCertificate(garbled).created, false)

    const lone = stateDir()
    fs.mkdirSync(path.join(lone, 'tls'), { recursive: true })
    fs.writeFileSync(path.join(lone, 'tls', 'self-signed.key'), generateSelfSignedCertificate().keyPem)
    assert.equal(ensureSelfSignedCertificate(lone).created, true)
    assert.equal(ensureSelfSignedCertificate(lone).created, false)

    const badCa = stateDir()
    ensureSelfSignedCertificate(badCa)
    fs.writeFileSync(path.join(badCa, 'tls', 'ca.key'), generateLocalCa().keyPem)
    const r = ensureSelfSignedCertificate(badCa)
    assert.deepEqual([r.created, r.caCreated, r.replacedLegacy], [true, true, false])
  })

  void it('rejects a negative renewBeforeDays', () => {
    assert.throws(() => ensureSelfSignedCertificate(stateDir(), { renewBeforeDays: -1 }), /renewBeforeDays/)
  })
})

// ---------------------------------------------------------------------------------------------
// The generated files judged by independent, strict verifiers: openssl, and pyca/cryptography's
// Rust path validator (webpki's rules: a CA certificate is refused as a server certificate).

function have(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { encoding: 'utf8' }).status === 0
}
const OPENSSL = have('openssl', ['version'])
const PYCA = have('python3', ['-c', 'from cryptography.x509.verification import PolicyBuilder, Store'])

const PYCA_VERIFY = `
import sys
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
import ipaddress
ca = x509.load_pem_x509_certificates(open(sys.argv[1], 'rb').read())
chain = x509.load_pem_x509_certificates(open(sys.argv[2], 'rb').read())
name = sys.argv[3]
try:
    subject = x509.IPAddress(ipaddress.ip_address(name))
except ValueError:
    subject = x509.DNSName(name)
try:
    PolicyBuilder().store(Store(ca)).build_server_verifier(subject).verify(chain[0], chain[1:])
    print('OK')
except Exception as e:
    print('REFUSED', e)
    sys.exit(3)
`

void describe('the generated chain under strict verifiers', () => {
  let dir = ''
  let files: ReturnType<typeof ensureSelfSignedCertificate>
  let legacy = ''

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-strict-'))
    files = ensureSelfSignedCertificate(dir)
    legacy = path.join(dir, 'legacy.crt')
    fs.writeFileSync(legacy, generateSelfSignedCertificate().certPem)
  })
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  const openssl = (...args: string[]): { status: number | null; out: string } => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' })
    return { status: r.status, out: r.stdout + r.stderr }
  }

  void it('openssl x509 -text: the leaf is CA:FALSE, digitalSignature, serverAuth, with the SANs; the CA is CA:TRUE, pathlen:0, keyCertSign', { skip: OPENSSL ? false : 'openssl is not installed' }, () => {
    const leaf = openssl('x509', '-in', files.certFile, '-noout', '-text').out
    assert.match(leaf, /X509v3 Basic Constraints: critical\s+CA:FALSE/)
    assert.match(leaf, /X509v3 Key Usage: critical\s+Digital Signature\n/)
    assert.match(leaf, /X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication\n/)
    assert.match(leaf, /DNS:localhost/)
    assert.match(leaf, new RegExp(`DNS:${os.hostname().toLowerCase().replace(/[.]/g, '\\.')}`))
    assert.match(leaf, /IP Address:127\.0\.0\.1/)
    assert.match(leaf, /IP Address:0:0:0:0:0:0:0:1/)
    assert.match(leaf, /Issuer: CN = gatehouse local CA [0-9a-f]{8}\n/)
    const ca = openssl('x509', '-in', files.caFile, '-noout', '-text').out
    assert.match(ca, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/)
    assert.match(ca, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/)
    assert.doesNotMatch(ca, /TLS Web Server Authentication/, 'the CA cannot be served')
    // The authority key identifier of the leaf is the CA's subject key identifier.
    const ski = /Subject Key Identifier:\s*\n\s+([0-9A-F:]+)/.exec(ca)?.[1]
    assert.ok(ski !== undefined)
    assert.match(leaf, new RegExp(`Authority Key Identifier:\\s*\\n\\s+(keyid:)?${ski}`))
  })

  void it('openssl verify -x509_strict -purpose sslserver accepts the leaf with the CA, and refuses it without', { skip: OPENSSL ? false : 'openssl is not installed' }, () => {
    const leafOnly = path.join(dir, 'leaf.crt')
    fs.writeFileSync(leafOnly, /^-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/.exec(fs.readFileSync(files.certFile, 'utf8'))?.[0] ?? '')
    const ok = openssl('verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', files.caFile, leafOnly)
    assert.equal(ok.status, 0, ok.out)
    assert.match(ok.out, /: OK/)
    // The README's --cacert file works as a CA file too.
    assert.equal(openssl('verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', files.certFile, leafOnly).status, 0)
    // Positive control: a different CA does not verify it.
    const other = path.join(dir, 'other-ca.crt')
    fs.writeFileSync(other, generateLocalCa().certPem)
    assert.notEqual(openssl('verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', other, leafOnly).status, 0)
  })

  void it('pyca/cryptography (webpki rules) accepts the generated chain for localhost, the host name, 127.0.0.1 and ::1, and refuses the old CA-style certificate', { skip: PYCA ? false : 'python3 with cryptography ≥ 42 is not installed' }, () => {
    const verify = (ca: string, chain: string, name: string): { status: number | null; out: string } => {
      const r = spawnSync('python3', ['-c', PYCA_VERIFY, ca, chain, name], { encoding: 'utf8' })
      return { status: r.status, out: r.stdout + r.stderr }
    }
    for (const name of ['localhost', os.hostname().toLowerCase(), '127.0.0.1', '::1']) {
      const r = verify(files.caFile, files.certFile, name)
      assert.equal(r.status, 0, `${name}: ${r.out}`)
    }
    assert.equal(verify(files.caFile, files.certFile, 'evil.example').status, 3, 'positive control: another name is refused')
    // What the issue reported: a CA certificate presented as the server certificate is refused.
    const old = verify(legacy, legacy, 'localhost')
    assert.equal(old.status, 3, old.out)
    assert.match(old.out, /basicConstraints\.cA must not be asserted in an EE certificate/)
  })

  void it('a real TLS handshake from node trusts the served chain with only the CA as ca', async () => {
    const server = https.createServer({ cert: fs.readFileSync(files.certFile), key: fs.readFileSync(files.keyFile) }, (_req, res) => res.end('hello'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const connect = (opts: tls.ConnectionOptions): Promise<tls.TLSSocket> =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ...opts })
        s.once('secureConnect', () => resolve(s))
        s.once('error', reject)
      })
    try {
      for (const servername of ['localhost', undefined]) {
        const s = await connect({ ca: fs.readFileSync(files.caFile, 'utf8'), ...(servername === undefined ? {} : { servername }) })
        assert.equal(s.authorized, true)
        assert.equal(s.getPeerX509Certificate()?.ca, false, 'the server presents the leaf')
        s.destroy()
      }
      await assert.rejects(connect({ ca: generateLocalCa().certPem, servername: 'localhost' }), (e: NodeJS.ErrnoException) => e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || e.code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || e.code === 'SELF_SIGNED_CERT_IN_CHAIN')
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})

void describe('generateLocalCa and issueServerCertificate', () => {
  void it('issue a leaf that cannot outlive its CA, from a CA with its own key only', () => {
    const now = new Date('2030-01-01T00:00:00Z')
    const ca = generateLocalCa({ now, days: 100 })
    const leaf = issueServerCertificate(ca, { now, days: 365, dnsNames: ['svc.example'], ipAddresses: [] })
    const c = new crypto.X509Certificate(leaf.certPem)
    assert.equal(Date.parse(c.validTo), Date.parse(new crypto.X509Certificate(ca.certPem).validTo))
    assert.equal(c.subjectAltName, 'DNS:svc.example')
    assert.throws(() => issueServerCertificate({ certPem: ca.certPem, keyPem: generateLocalCa().keyPem }), TypeError)
    assert.throws(() => issueServerCertificate(leaf), TypeError, 'a leaf cannot sign')
    assert.throws(() => issueServerCertificate(ca, { dnsNames: [], ipAddresses: [] }), /at least one/)
  })
})
