import * as assert from 'node:assert/strict'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as https from 'node:https'
import type { AddressInfo } from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as tls from 'node:tls'

import { ensureSelfSignedCertificate, generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'

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
  function plant(dir: string, certPem: string, keyPem: string): void {
    fs.mkdirSync(path.join(dir, 'tls'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'tls', 'self-signed.crt'), certPem)
    fs.writeFileSync(path.join(dir, 'tls', 'self-signed.key'), keyPem)
  }

  void it('creates the pair with tight permissions, then reuses it byte for byte', () => {
    const dir = stateDir()
    const first = ensureSelfSignedCertificate(dir)
    assert.equal(first.created, true)
    assert.equal(first.certFile, path.join(dir, 'tls', 'self-signed.crt'))
    assert.equal(first.keyFile, path.join(dir, 'tls', 'self-signed.key'))

    const { cert, certPem, keyPem } = readPair(first.certFile, first.keyFile)
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(keyPem)))
    assert.match(keyPem, PKCS8_PEM_START)
    assert.ok((cert.subjectAltName ?? '').includes('DNS:localhost'))
    if (posix) {
      assert.equal(fs.statSync(first.keyFile).mode & 0o777, 0o600)
      assert.equal(fs.statSync(first.certFile).mode & 0o777, 0o644)
      assert.equal(fs.statSync(path.dirname(first.keyFile)).mode & 0o777, 0o700 & ~process.umask())
    }
    // Atomic writes leave no temp files behind.
    assert.deepEqual(fs.readdirSync(path.dirname(first.certFile)).sort(), ['self-signed.crt', 'self-signed.key'])

    const second = ensureSelfSignedCertificate(dir)
    assert.deepEqual(second, { ...first, created: false })
    assert.equal(fs.readFileSync(second.certFile, 'utf8'), certPem)
    assert.equal(fs.readFileSync(second.keyFile, 'utf8'), keyPem)
  })

  void it('renews a certificate that expires within renewBeforeDays', () => {
    const dir = stateDir()
    const old = generateSelfSignedCertificate({ now: new Date(Date.now() - 355 * DAY_MS) }) // expires in 10 days
    plant(dir, old.certPem, old.keyPem)

    // 10 days left is fine when only 5 are required...
    assert.equal(ensureSelfSignedCertificate(dir, { renewBeforeDays: 5 }).created, false)

    // ...but not with the default 30.
    const result = ensureSelfSignedCertificate(dir)
    assert.equal(result.created, true)
    const { cert, certPem, keyPem } = readPair(result.certFile, result.keyFile)
    assert.notEqual(certPem, old.certPem)
    assert.notEqual(keyPem, old.keyPem)
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(keyPem)))
    assert.ok(Date.parse(cert.validTo) > Date.now() + 360 * DAY_MS)
  })

  void it('judges expiry by the now option', () => {
    const dir = stateDir()
    assert.equal(ensureSelfSignedCertificate(dir).created, true)
    assert.equal(ensureSelfSignedCertificate(dir, { now: new Date(Date.now() + 300 * DAY_MS) }).created, false)
    assert.equal(ensureSelfSignedCertificate(dir, { now: new Date(Date.now() + 340 * DAY_MS) }).created, true)
  })

  void it('replaces a key that does not match the certificate', () => {
    const dir = stateDir()
    const a = generateSelfSignedCertificate()
    const b = generateSelfSignedCertificate()
    plant(dir, a.certPem, b.keyPem)

    const result = ensureSelfSignedCertificate(dir)
    assert.equal(result.created, true)
    const { cert, certPem, keyPem } = readPair(result.certFile, result.keyFile)
    assert.notEqual(certPem, a.certPem)
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(keyPem)))
    if (posix) assert.equal(fs.statSync(result.keyFile).mode & 0o777, 0o600, 'rewritten key is 0600 again')
  })

  void it('replaces an unparsable certificate and a lone key', () => {
    const garbled = stateDir()
    plant(garbled, '-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n', generateSelfSignedCertificate().keyPem)
    assert.equal(ensureSelfSignedCertificate(garbled).created, true)
    assert.equal(ensureSelfSignedCertificate(garbled).created, false)

    const lone = stateDir()
    fs.mkdirSync(path.join(lone, 'tls'), { recursive: true })
    fs.writeFileSync(path.join(lone, 'tls', 'self-signed.key'), generateSelfSignedCertificate().keyPem)
    assert.equal(ensureSelfSignedCertificate(lone).created, true)
    assert.equal(ensureSelfSignedCertificate(lone).created, false)
  })

  void it('rejects a negative renewBeforeDays', () => {
    assert.throws(() => ensureSelfSignedCertificate(stateDir(), { renewBeforeDays: -1 }), /renewBeforeDays/)
  })
})
