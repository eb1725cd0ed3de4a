/**
 * Process lifecycle through the real binary: health and readiness, the graceful drain on SIGTERM
 * (in-flight request completes, /readyz answers 503, new connections are refused, exit 0), and the
 * grace period bounding a request that never finishes.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs, usedSecrets } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'lifecycle-secret-key-0b7e'
const KEY_ENV = {
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
  AUTHENTICATION_APIKEY_USERS: 'lifecycle-user',
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
/** Like sleep, but does not keep the test process alive once everything else is done. */
const deadline = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref())

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await sleep(20)
  }
  assert.fail(`timed out waiting for ${what}`)
}

/** A GET on a fresh connection; never throws on status. */
function get(url: string, ca: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { agent: false, ca, headers: { authorization: `Bearer ${KEY}` } }, (res) => {
      let t = ''
      res.on('data', (c: Buffer) => (t += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: t }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Open a TCP connection; resolves 'connected' or the error code. */
function tcp(url: string): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
      s.destroy()
      resolve('connected')
    })
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
  })
}

/** A POST whose body the test sends piece by piece. */
function slowUpload(url: string, ca: string, total: number): { write(n: number): void; end(n: number): void; response: Promise<{ status: number; text: string }> } {
  let req!: ReturnType<typeof https.request>
  const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
    req = https.request(url, { method: 'POST', agent: false, ca, headers: { authorization: `Bearer ${KEY}`, 'content-length': String(total), 'content-type': 'application/octet-stream' } }, (res) => {
      let t = ''
      res.on('data', (c: Buffer) => (t += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: t }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  return {
    write: (n) => void req.write(Buffer.alloc(n, 0x41)),
    end: (n) => void req.end(Buffer.alloc(n, 0x42)),
    response,
  }
}

describe('lifecycle: health, readiness and the SIGTERM drain (real binary, TLS)', () => {
  let up: RecordingUpstream
  let dir: string
  let gh: ServeProcess
  let ca: string

  before(async () => {
    usedSecrets.add(KEY)
    up = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-life-'))
    gh = await startServe({ ...KEY_ENV, GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_UPSTREAM_URL: up.url }, { cwd: dir })
    ca = readFileSync(path.join(dir, 'state/tls/self-signed.crt'), 'utf8')
  })

  after(async () => {
    if (gh.child.exitCode === null) gh.child.kill('SIGKILL')
    await gh.exited
    await up.close()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
  })

  it('/healthz 200 and /readyz 200 while running', async () => {
    const h = await get(`${gh.adminUrl}/healthz`, ca)
    assert.equal(h.status, 200)
    assert.equal((JSON.parse(h.text) as { status: string }).status, 'ok')
    const r = await get(`${gh.adminUrl}/readyz`, ca)
    assert.equal(r.status, 200, r.text)
    assert.equal((JSON.parse(r.text) as { status: string }).status, 'ready')
    assert.equal((await get(`${gh.dataUrl}/ping`, ca)).status, 200)
  })

  it('SIGTERM during a slow upload: the upload completes with 200, /readyz is 503 while draining, new connections are refused, exit 0', async () => {
    up.reset()
    const CHUNK = 1000
    const CHUNKS = 10
    const upload = slowUpload(`${gh.dataUrl}/upload`, ca, CHUNK * CHUNKS)
    upload.write(CHUNK)
    await until('the upload to reach the upstream', () => up.requests.some((r) => r.url === '/upload'))

    const t0 = Date.now()
    gh.child.kill('SIGTERM')
    let ready: { status: number; text: string } | undefined
    await until('/readyz to answer 503', async () => {
      ready = await get(`${gh.adminUrl}/readyz`, ca)
      return ready.status === 503
    })
    assert.equal((JSON.parse(ready?.text ?? '{}') as { checks?: { draining?: boolean } }).checks?.draining, true)
    assert.equal(await tcp(gh.dataUrl), 'ECONNREFUSED', 'the data port no longer accepts connections')
    assert.equal(gh.child.exitCode, null, 'still running while the upload is in flight')

    // keep sending slowly for ~1 s
    for (let i = 1; i < CHUNKS - 1; i++) {
      await sleep(110)
      upload.write(CHUNK)
    }
    await sleep(110)
    upload.end(CHUNK)
    const r = await upload.response
    assert.equal(r.status, 200, r.text)
    assert.equal((JSON.parse(r.text) as { bodyBytes: number }).bodyBytes, CHUNK * CHUNKS)
    assert.equal(up.requests.find((x) => x.url === '/upload')?.bodyBytes, CHUNK * CHUNKS)
    assert.ok(Date.now() - t0 >= 900, 'the upload really was in flight for about a second after SIGTERM')

    assert.equal(await gh.exited, 0)
    assert.ok(gh.stdout.some((l) => l.includes('draining')))
    const access = gh.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request' && l.path === '/upload')
    assert.equal(access?.status, 200)
  })
})

describe('lifecycle: shutdown.gracePeriod bounds a request that never finishes (real binary)', () => {
  let up: RecordingUpstream
  let dir: string
  let gh: ServeProcess
  let ca: string

  before(async () => {
    up = await startUpstream()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-life-grace-'))
    const cfg = path.join(dir, 'proxy.yaml')
    writeFileSync(cfg, 'shutdown:\n  gracePeriod: 500ms\n')
    gh = await startServe({ ...KEY_ENV, GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_UPSTREAM_URL: up.url }, { cwd: dir, args: ['--config', cfg] })
    ca = readFileSync(path.join(dir, 'state/tls/self-signed.crt'), 'utf8')
  })

  after(async () => {
    if (gh.child.exitCode === null) gh.child.kill('SIGKILL')
    await gh.exited
    await up.close()
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
  })

  it('an upstream that never answers and an upload that never ends: exit 0 within ~2 s of SIGTERM', async () => {
    up.reset()
    const hang = get(`${gh.dataUrl}/hang`, ca).then(
      (r) => `status ${r.status}`,
      (e: Error) => `error ${e.message}`,
    )
    const upload = slowUpload(`${gh.dataUrl}/never-ends`, ca, 1_000_000)
    upload.write(1000)
    const uploadOutcome = upload.response.then(
      (r) => `status ${r.status}`,
      (e: Error) => `error ${e.message}`,
    )
    await until('both requests to reach the upstream', () => up.requests.some((r) => r.url === '/hang') && up.requests.some((r) => r.url === '/never-ends'))

    const t0 = Date.now()
    gh.child.kill('SIGTERM')
    const code = await Promise.race([gh.exited, deadline(5000).then(() => 'still running after 5 s')])
    const ms = Date.now() - t0
    assert.equal(code, 0)
    assert.ok(ms < 2000, `exited after ${ms} ms`)
    assert.ok(ms >= 400, `exited after ${ms} ms, before the grace period was over`)
    // the clients see their connections end (no hang on the client side either)
    const outcomes = await Promise.race([Promise.all([hang, uploadOutcome]), deadline(3000).then(() => ['client still waiting'])])
    assert.ok(!outcomes.includes('client still waiting'), JSON.stringify(outcomes))
    assert.ok(gh.stdout.some((l) => l.includes('grace period over')))
  })
})
