/**
 * Bodies stream in both directions (SPEC §7): a 256 MiB upload and a 256 MiB download through the
 * real binary, over plain HTTP and with gatehouse terminating TLS, with the gatehouse process's
 * resident memory (VmRSS) sampled every 50 ms. The byte counts must be exact and RSS may not grow
 * by more than 64 MiB over the baseline.
 *
 * GATEHOUSE_STREAM_TEST_BYTES raises the size for a manual run, e.g.
 *   GATEHOUSE_STREAM_TEST_BYTES=1073741824 node --import tsx --test test/integration/streaming.test.ts
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, usedSecrets } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'streaming-secret-key-5a9c'
const MiB = 1024 * 1024
const BYTES = Number(process.env.GATEHOUSE_STREAM_TEST_BYTES ?? 256 * MiB)
const MAX_GROWTH = 64 * MiB

/** VmRSS of a process in bytes. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  assert.ok(m !== null, 'no VmRSS in /proc/<pid>/status')
  return Number(m[1]) * 1024
}

/** Sample RSS every 50 ms while `work` runs; returns its result, the peak and the sample count. */
async function sampled<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; start: number; peak: number; samples: number; ms: number }> {
  const start = rss(pid)
  let peak = start
  let samples = 1
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rss(pid))
      samples++
    } catch {
      /* process gone: the work will fail on its own */
    }
  }, 50)
  const t0 = Date.now()
  try {
    const result = await work()
    peak = Math.max(peak, rss(pid))
    return { result, start, peak, samples, ms: Date.now() - t0 }
  } finally {
    clearInterval(timer)
  }
}

/** A generated body of exactly `n` bytes, produced on demand (never held in memory). */
function generated(n: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  let left = n
  return new Readable({
    read() {
      if (left === 0) {
        this.push(null)
        return
      }
      const k = Math.min(left, chunk.length)
      left -= k
      this.push(k === chunk.length ? chunk : chunk.subarray(0, k))
    },
  })
}

const mb = (n: number): string => (n / MiB).toFixed(1)

for (const tls of [false, true]) describe(`streaming through the real binary (${mb(BYTES)} MiB each way, ${tls ? 'TLS' : 'plain HTTP'})`, () => {
  const cert = tls ? generateSelfSignedCertificate({ commonName: 'gatehouse streaming test', days: 1 }) : undefined
  // The client trusts exactly this certificate (verification stays on).
  const client = (url: string, o: http.RequestOptions, cb: (res: http.IncomingMessage) => void): http.ClientRequest =>
    cert === undefined ? http.request(url, o, cb) : https.request(url, { ...o, ca: cert.certPem }, cb)
  let up: RecordingUpstream
  let dir: string
  let gh: ServeProcess
  let pid: number
  let baseline: number

  before(async () => {
    usedSecrets.add(KEY)
    up = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-stream-'))
    const tlsEnv: Record<string, string> = { GATEHOUSE_TLS_ENABLED: 'false' }
    if (cert !== undefined) {
      writeFileSync(path.join(dir, 'cert.pem'), cert.certPem)
      writeFileSync(path.join(dir, 'key.pem'), cert.keyPem, { mode: 0o600 })
      Object.assign(tlsEnv, { GATEHOUSE_TLS_ENABLED: 'true', GATEHOUSE_TLS_CERT_FILE: path.join(dir, 'cert.pem'), GATEHOUSE_TLS_KEY_FILE: path.join(dir, 'key.pem') })
    }
    gh = await startServe(
      {
        GATEHOUSE_STATE_DIR: path.join(dir, 'state'),
        ...tlsEnv,
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'generic',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
        AUTHENTICATION_APIKEY_USERS: 'streamer',
      },
      { cwd: dir },
    )
    pid = gh.child.pid as number
    // warm up the forwarding path (undici pool, JIT), then take the baseline
    for (let i = 0; i < 5; i++) {
      await upload(1 * MiB)
      await download(1 * MiB)
    }
    await new Promise((r) => setTimeout(r, 300))
    baseline = rss(pid)
    console.log(`streaming (${tls ? 'TLS' : 'plain'}): gatehouse baseline VmRSS ${mb(baseline)} MiB`)
  })

  after(async () => {
    gh.child.kill('SIGTERM')
    assert.equal(await gh.exited, 0)
    await up.close()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
  })

  function upload(n: number): Promise<{ status: number; upstreamBytes: number }> {
    return new Promise((resolve, reject) => {
      const req = client(
        `${gh.dataUrl}/upload`,
        { method: 'POST', agent: false, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/octet-stream', 'content-length': String(n) } },
        (res) => {
          let t = ''
          res.on('data', (c: Buffer) => (t += c.toString('utf8')))
          res.on('end', () => {
            try {
              resolve({ status: res.statusCode ?? 0, upstreamBytes: (JSON.parse(t) as { bodyBytes: number }).bodyBytes })
            } catch (e) {
              reject(new Error(`status ${res.statusCode}: ${t}`, { cause: e }))
            }
          })
        },
      )
      req.on('error', reject)
      generated(n).pipe(req)
    })
  }

  function download(n: number): Promise<{ status: number; bytes: number; declared: string | undefined }> {
    return new Promise((resolve, reject) => {
      const req = client(`${gh.dataUrl}/download/${n}`, { agent: false, headers: { authorization: `Bearer ${KEY}` } }, (res) => {
        let bytes = 0
        res.on('data', (c: Buffer) => (bytes += c.length))
        res.on('end', () => (res.complete ? resolve({ status: res.statusCode ?? 0, bytes, declared: res.headers['content-length'] }) : reject(new Error(`download cut after ${bytes} bytes`))))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
  }

  it(`upload of ${mb(BYTES)} MiB arrives byte-exact with flat memory`, async () => {
    up.reset()
    const { result, start, peak, samples, ms } = await sampled(pid, () => upload(BYTES))
    const growth = peak - baseline
    console.log(`streaming (${tls ? 'TLS' : 'plain'}): upload ${mb(BYTES)} MiB in ${ms} ms (${((BYTES / MiB) * 1000 / ms).toFixed(0)} MiB/s); VmRSS baseline ${mb(baseline)} MiB, at start ${mb(start)} MiB, peak ${mb(peak)} MiB, growth ${mb(growth)} MiB (${samples} samples)`)
    assert.equal(result.status, 200)
    assert.equal(result.upstreamBytes, BYTES)
    assert.equal(up.requests.at(-1)?.bodyBytes, BYTES)
    assert.ok(samples >= 3, 'memory was sampled during the transfer')
    assert.ok(growth < MAX_GROWTH, `VmRSS grew by ${mb(growth)} MiB (limit ${mb(MAX_GROWTH)} MiB)`)
  })

  it(`download of ${mb(BYTES)} MiB arrives byte-exact with flat memory`, async () => {
    const { result, start, peak, samples, ms } = await sampled(pid, () => download(BYTES))
    const growth = peak - baseline
    console.log(`streaming (${tls ? 'TLS' : 'plain'}): download ${mb(BYTES)} MiB in ${ms} ms (${((BYTES / MiB) * 1000 / ms).toFixed(0)} MiB/s); VmRSS baseline ${mb(baseline)} MiB, at start ${mb(start)} MiB, peak ${mb(peak)} MiB, growth ${mb(growth)} MiB (${samples} samples)`)
    assert.equal(result.status, 200)
    assert.equal(result.declared, String(BYTES))
    assert.equal(result.bytes, BYTES)
    assert.ok(samples >= 3, 'memory was sampled during the transfer')
    assert.ok(growth < MAX_GROWTH, `VmRSS grew by ${mb(growth)} MiB (limit ${mb(MAX_GROWTH)} MiB)`)
  })
})
