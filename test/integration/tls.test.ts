/**
 * TLS of both listeners (SPEC §4): versions and suites refused and accepted (each refusal with a
 * positive control that accepts the same client), the same certificate on the admin listener,
 * rotation of certificate files without a restart, the self-signed certificate reused across a
 * restart, and plain HTTP with a warning when TLS is off (real binary).
 *
 * Suites this OpenSSL cannot even offer (3DES, RC4, export, NULL) are tested with a hand-built
 * TLS 1.2 ClientHello, whose builder is itself checked against an allowed suite.
 */
import assert from 'node:assert/strict'
import { randomBytes, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { generateSelfSignedCertificate, type SelfSignedPem } from '../../src/tls/selfsigned.ts'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, startProxy, type TestProxy } from '../helpers/proxy.ts'

// --- clients ------------------------------------------------------------------------------------

interface Handshake {
  ok: boolean
  protocol?: string | null
  cipher?: string
  kx?: string
  fingerprint?: string
  error?: string
}

const hostPort = (url: string): { host: string; port: number } => {
  const u = new URL(url)
  return { host: u.hostname, port: Number(u.port) }
}

/** One TLS handshake; resolves with what was negotiated or the error (never rejects). */
function handshake(port: number, opts: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...opts }, () => {
      const r: Handshake = {
        ok: true,
        protocol: s.getProtocol(),
        cipher: s.getCipher().name,
        kx: (s.getEphemeralKeyInfo() as { type?: string } | null)?.type,
        fingerprint: s.getPeerCertificate().fingerprint256,
      }
      s.end()
      resolve(r)
    })
    s.on('error', (e) => {
      s.destroy()
      resolve({ ok: false, error: e.message })
    })
    s.setTimeout(5000, () => {
      s.destroy()
      resolve({ ok: false, error: 'timeout' })
    })
  })
}

const fingerprintOf = (pem: string): string => new X509Certificate(pem).fingerprint256

/** Poll new handshakes until the served certificate has `want` fingerprint (bounded). */
async function waitForFingerprint(port: number, ca: string[], want: string, ms = 5000): Promise<{ seen: string | undefined; elapsed: number }> {
  const start = Date.now()
  let seen: string | undefined
  while (Date.now() - start < ms) {
    seen = (await handshake(port, { ca })).fingerprint
    if (seen === want) break
    await new Promise((r) => setTimeout(r, 100))
  }
  return { seen, elapsed: Date.now() - start }
}

// --- a hand-made TLS 1.2 ClientHello --------------------------------------------------------------

const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff])
const u24 = (n: number): Buffer => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff])
const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), u16(data.length), data])
const list16 = (items: number[]): Buffer => Buffer.concat([u16(items.length * 2), ...items.map(u16)])

/** A TLS 1.2 ClientHello offering exactly `suites` (plus the renegotiation SCSV). */
function clientHello(suites: number[]): Buffer {
  const extensions = Buffer.concat([
    ext(0x000a, list16([0x001d, 0x0017, 0x0018])), // supported_groups: x25519, P-256, P-384
    ext(0x000b, Buffer.from([1, 0])), // ec_point_formats: uncompressed
    ext(0x000d, list16([0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201])), // signature_algorithms
    ext(0x0017, Buffer.alloc(0)), // extended_master_secret
  ])
  const body = Buffer.concat([
    u16(0x0303),
    randomBytes(32),
    Buffer.from([0]),
    list16([...suites, 0x00ff]),
    Buffer.from([1, 0]),
    u16(extensions.length),
    extensions,
  ])
  const hs = Buffer.concat([Buffer.from([0x01]), u24(body.length), body])
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs])
}

/** Send a raw ClientHello; returns the suite of the ServerHello, or 'refused' (alert or close). */
function rawHello(port: number, suites: number[]): Promise<number | 'refused'> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0)
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(clientHello(suites)))
    const done = (v: number | 'refused'): void => {
      s.destroy()
      resolve(v)
    }
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      if (buf[0] === 0x15) return done('refused') // alert
      // handshake record whose first message is ServerHello (2): version(2) random(32) sid(1+n) suite(2)
      if (buf[0] === 0x16 && buf.length >= 44 && buf[5] === 0x02) {
        const sidLen = buf[5 + 4 + 2 + 32] as number
        const at = 5 + 4 + 2 + 32 + 1 + sidLen
        if (buf.length >= at + 2) done(buf.readUInt16BE(at))
      }
    })
    s.on('error', () => done('refused'))
    s.on('close', () => done('refused'))
    s.setTimeout(5000, () => done('refused'))
  })
}

/** An HTTP(S) GET that never throws on status. */
function get(url: string, opts: https.RequestOptions = {}): Promise<{ status: number; text: string; reused: boolean; fingerprint?: string }> {
  const mod = url.startsWith('https:') ? https : http
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'GET', ...opts }, (res) => {
      const chunks: Buffer[] = []
      const sock = res.socket as tls.TLSSocket
      const fingerprint = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate().fingerprint256 : undefined
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), reused: req.reusedSocket, fingerprint }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The second base64 line of a PEM private key: must never show up in a log. */
const keyMarker = (pem: string): string => pem.split('\n')[1] ?? 'x'.repeat(64)

// ------------------------------------------------------------------------------------------------

const AEAD = /GCM|CHACHA20|CCM/
const OLD_CLIENT: tls.ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }

describe('TLS versions and suites (self-signed certificate, echo upstream)', () => {
  let px: TestProxy
  let control: tls.Server
  let controlPort: number
  let ca: string
  let dataPort: number

  before(async () => {
    px = await startProxy({})
    ca = px.ca as string
    dataPort = hostPort(px.url).port
    const cert = px.server.cert
    assert.ok(cert !== undefined)
    // The positive control: plain node:tls with the same certificate and a permissive policy.
    control = tls.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile), minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end())
    control.on('tlsClientError', () => {})
    await new Promise<void>((r) => control.listen(0, '127.0.0.1', r))
    controlPort = (control.address() as net.AddressInfo).port
  })

  after(async () => {
    await new Promise<void>((r) => control.close(() => r()))
    const key = px.server.cert === undefined ? undefined : readFileSync(px.server.cert.keyFile, 'utf8')
    await px.stop()
    assertNoSecretsInLogs(px.logs, key === undefined ? [] : [keyMarker(key)])
  })

  for (const [name, o] of [
    ['TLS 1.0 and 1.1', OLD_CLIENT],
    ['TLS 1.0 only', { ...OLD_CLIENT, maxVersion: 'TLSv1' }],
    ['TLS 1.1 only', { ...OLD_CLIENT, minVersion: 'TLSv1.1' }],
  ] as [string, tls.ConnectionOptions][]) {
    it(`${name}: refused by gatehouse, accepted by the control server`, async () => {
      const ctl = await handshake(controlPort, { ...o, ca })
      assert.equal(ctl.ok, true, `positive control failed: ${ctl.error}`)
      assert.match(String(ctl.protocol), /^TLSv1(\.1)?$/)
      const gh = await handshake(dataPort, { ...o, ca })
      assert.equal(gh.ok, false, `gatehouse accepted ${gh.protocol}`)
    })
  }

  it('TLS 1.2 succeeds with an AEAD suite and ephemeral ECDH key exchange', async () => {
    const r = await handshake(dataPort, { ca, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })
    assert.equal(r.ok, true, r.error)
    assert.equal(r.protocol, 'TLSv1.2')
    assert.match(String(r.cipher), AEAD)
    assert.match(String(r.cipher), /^ECDHE-/)
    assert.equal(r.kx, 'ECDH')
  })

  it('TLS 1.2 with a client that prefers CBC still gets AEAD', async () => {
    const r = await handshake(dataPort, { ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256@SECLEVEL=0' })
    assert.equal(r.ok, true, r.error)
    assert.equal(r.cipher, 'ECDHE-ECDSA-AES128-GCM-SHA256')
  })

  it('TLS 1.3 succeeds', async () => {
    const r = await handshake(dataPort, { ca, minVersion: 'TLSv1.3' })
    assert.equal(r.ok, true, r.error)
    assert.equal(r.protocol, 'TLSv1.3')
    assert.match(String(r.cipher), /^TLS_(AES_(128|256)_GCM|CHACHA20_POLY1305)_SHA(256|384)$/)
  })

  it('default client negotiates TLS 1.3 and verifies the certificate for localhost', async () => {
    const r = await handshake(dataPort, { ca, servername: 'localhost' })
    assert.equal(r.ok, true, r.error)
    assert.equal(r.protocol, 'TLSv1.3')
  })

  for (const suite of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256']) {
    it(`CBC suite ${suite} (TLS 1.2 max) is refused; the control server accepts it`, async () => {
      const o: tls.ConnectionOptions = { ca, maxVersion: 'TLSv1.2', ciphers: `${suite}@SECLEVEL=0` }
      const ctl = await handshake(controlPort, o)
      assert.equal(ctl.ok, true, `positive control failed: ${ctl.error}`)
      assert.equal(ctl.cipher, suite)
      const gh = await handshake(dataPort, o)
      assert.equal(gh.ok, false, `gatehouse negotiated ${gh.cipher}`)
    })
  }

  it('the raw ClientHello builder works: an allowed AEAD suite gets a ServerHello from gatehouse, CBC-SHA1 from the control', async () => {
    assert.equal(await rawHello(dataPort, [0xc02b]), 0xc02b) // ECDHE-ECDSA-AES128-GCM-SHA256
    assert.equal(await rawHello(controlPort, [0xc009]), 0xc009) // ECDHE-ECDSA-AES128-SHA
  })

  const weak: [string, number[]][] = [
    ['CBC-SHA1', [0xc009, 0xc00a, 0x002f, 0x0035, 0xc013, 0xc014]],
    ['3DES', [0xc008, 0xc012, 0x000a, 0x0016]],
    ['RC4', [0xc007, 0xc011, 0x0005, 0x0004]],
    ['export', [0x0003, 0x0006, 0x0008, 0x0014, 0x0011]],
    ['NULL', [0xc006, 0xc010, 0x0002, 0x0001, 0x003b]],
    ['non-forward-secret AEAD (RSA key exchange)', [0x009c, 0x009d]],
  ]
  for (const [name, suites] of weak) {
    it(`a TLS 1.2 ClientHello offering only ${name} suites is refused`, async () => {
      assert.equal(await rawHello(dataPort, suites), 'refused')
      // positive control on the same listener: add one allowed suite and it is chosen
      assert.equal(await rawHello(dataPort, [...suites, 0xc02b]), 0xc02b)
    })
  }

  it('the admin listener serves the same certificate with the same policy', async () => {
    const adminPort = hostPort(px.adminUrl as string).port
    const d = await handshake(dataPort, { ca })
    const a = await handshake(adminPort, { ca })
    assert.equal(a.ok, true, a.error)
    assert.equal(a.fingerprint, d.fingerprint)
    assert.equal(a.fingerprint, fingerprintOf(ca))
    assert.equal((await handshake(adminPort, { ...OLD_CLIENT, ca })).ok, false, 'TLS 1.0/1.1 refused on admin too')
    assert.equal(await rawHello(adminPort, [0xc009, 0xc008]), 'refused')
    const r = await get(`${px.adminUrl}/healthz`, { ca })
    assert.equal(r.status, 200)
  })
})

describe('certificate rotation from files (tls.watchInterval: 200ms)', () => {
  let dir: string
  let certFile: string
  let keyFile: string
  let pems: SelfSignedPem[]
  let px: TestProxy
  let port: number
  let cas: string[]

  const put = (file: string, text: string): void => {
    writeFileSync(`${file}.tmp`, text)
    renameSync(`${file}.tmp`, file)
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-tls-rot-'))
    pems = [1, 2, 3].map((n) => generateSelfSignedCertificate({ commonName: `gatehouse rotation ${n}` }))
    cas = pems.map((p) => p.certPem)
    certFile = path.join(dir, 'tls.crt')
    keyFile = path.join(dir, 'tls.key')
    writeFileSync(certFile, pems[0]?.certPem as string)
    writeFileSync(keyFile, pems[0]?.keyPem as string)
    px = await startProxy({ yaml: `tls:\n  certFile: ${certFile}\n  keyFile: ${keyFile}\n  watchInterval: 200ms\n` })
    port = hostPort(px.url).port
  })

  after(async () => {
    await px?.stop()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs(px.logs, pems.map((p) => keyMarker(p.keyPem)))
  })

  it('serves the configured certificate at start', async () => {
    const r = await handshake(port, { ca: cas })
    assert.equal(r.fingerprint, fingerprintOf(cas[0] as string))
  })

  it('replacing both files rotates new handshakes; a connection opened before the swap still completes requests', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: cas })
    try {
      const first = await get(`${px.url}/before`, { agent })
      assert.equal(first.status, 200)
      assert.equal(first.fingerprint, fingerprintOf(cas[0] as string))

      // an upload in flight across the swap, on its own connection
      let inflightFinish: () => void = () => {}
      const inflight = new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = https.request(`${px.url}/upload`, { method: 'POST', ca: cas, agent: false, headers: { 'content-type': 'application/octet-stream' } }, (res) => {
          let t = ''
          res.on('data', (c: Buffer) => (t += c.toString('utf8')))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: t }))
        })
        req.on('error', reject)
        req.write(Buffer.alloc(1000, 1))
        inflightFinish = () => req.end(Buffer.alloc(1000, 2))
      })
      await new Promise((r) => setTimeout(r, 100))

      // key first, then certificate, each atomically (write + rename)
      put(keyFile, pems[1]?.keyPem as string)
      put(certFile, pems[1]?.certPem as string)
      const { seen, elapsed } = await waitForFingerprint(port, cas, fingerprintOf(cas[1] as string))
      assert.equal(seen, fingerprintOf(cas[1] as string), 'new handshakes did not get the new certificate within 5 s')
      assert.ok(elapsed < 5000)

      const second = await get(`${px.url}/after`, { agent })
      assert.equal(second.status, 200)
      assert.equal(second.reused, true, 'the keep-alive connection from before the swap was reused')
      assert.equal(second.fingerprint, fingerprintOf(cas[0] as string), 'and it still speaks with the old certificate')

      inflightFinish()
      const up = await inflight
      assert.equal(up.status, 200)
      assert.equal((JSON.parse(up.text) as { bodyBytes: number }).bodyBytes, 2000)
      assert.ok(px.logs.some((l) => l.includes('certificate reloaded')))
    } finally {
      agent.destroy()
    }
  })

  it('a mismatched pair (new certificate, old key) keeps serving the previous certificate', async () => {
    put(certFile, pems[2]?.certPem as string) // key file still holds key 2
    await new Promise((r) => setTimeout(r, 1000)) // five watch intervals
    for (let i = 0; i < 3; i++) {
      const r = await handshake(port, { ca: cas })
      assert.equal(r.ok, true, r.error)
      assert.equal(r.fingerprint, fingerprintOf(cas[1] as string))
    }
    assert.ok(px.logs.some((l) => /not a valid pair/.test(l) && /"level":"warn"/.test(l)), 'a warning explains why the files were not loaded')
    // positive control: once the key matches, the watcher (still running) picks it up
    put(keyFile, pems[2]?.keyPem as string)
    const { seen } = await waitForFingerprint(port, cas, fingerprintOf(cas[2] as string))
    assert.equal(seen, fingerprintOf(cas[2] as string))
  })
})

describe('self-signed certificate in the state directory', () => {
  let dir: string
  const logs: string[] = []

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-tls-ss-'))
  })

  after(() => {
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs(logs)
  })

  it('is reused across a restart with the same state directory, and its SANs cover localhost, 127.0.0.1, ::1 and the host name', async () => {
    const stateDir = path.join(dir, 'state')
    const first = await startProxy({ env: { GATEHOUSE_STATE_DIR: stateDir } })
    const ca1 = first.ca as string
    const fp1 = (await handshake(hostPort(first.url).port, { ca: ca1, servername: 'localhost' })).fingerprint
    const key1 = readFileSync(first.server.cert?.keyFile as string, 'utf8')
    assert.ok(first.logs.some((l) => l.includes('generated a self-signed certificate')))
    logs.push(...first.logs)
    await first.stop()

    const second = await startProxy({ env: { GATEHOUSE_STATE_DIR: stateDir } })
    const r = await handshake(hostPort(second.url).port, { ca: ca1, servername: 'localhost' })
    logs.push(...second.logs)
    const generatedAgain = second.logs.some((l) => l.includes('generated a self-signed certificate'))
    await second.stop()
    assert.equal(r.ok, true, `the first certificate no longer verifies: ${r.error}`)
    assert.equal(r.fingerprint, fp1)
    assert.equal(fp1, fingerprintOf(ca1))
    assert.equal(generatedAgain, false)

    const x = new X509Certificate(ca1)
    assert.equal(x.checkHost('localhost'), 'localhost')
    assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1')
    assert.ok(x.checkIP('::1') !== undefined, `::1 not in ${x.subjectAltName}`)
    assert.ok(x.checkHost(hostname()) !== undefined, `${hostname()} not in ${x.subjectAltName}`)
    assert.equal(x.checkHost('evil.example'), undefined, 'positive control: other names are not covered')
    assertNoSecretsInLogs(logs, [keyMarker(key1)])
  })
})

describe('GATEHOUSE_TLS_ENABLED=false (real binary)', () => {
  let dir: string
  let gh: ServeProcess

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-tls-off-'))
    gh = await startServe({ GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_TLS_ENABLED: 'false' }, { cwd: dir })
  })

  after(async () => {
    gh.child.kill('SIGTERM')
    assert.equal(await gh.exited, 0)
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
  })

  it('serves plain HTTP on both listeners and logs a warning', async () => {
    assert.match(gh.dataUrl, /^http:\/\//)
    assert.match(gh.adminUrl, /^http:\/\//)
    const r = await get(`${gh.dataUrl}/hello?x=1`, { agent: false })
    assert.equal(r.status, 200)
    assert.equal((JSON.parse(r.text) as { path: string }).path, '/hello')
    assert.equal((await get(`${gh.adminUrl}/healthz`, { agent: false })).status, 200)
    const warn = gh.stdout.map((l) => JSON.parse(l) as { level: string; msg: string }).find((l) => l.level === 'warn' && /tls/i.test(l.msg))
    assert.ok(warn !== undefined, `no TLS warning in:\n${gh.stdout.join('\n')}`)
    // and it really is not TLS
    assert.equal((await handshake(hostPort(gh.dataUrl).port, {})).ok, false)
  })
})
