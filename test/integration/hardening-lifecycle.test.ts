/**
 * Issue 6, lifecycle and abuse: configuration reload (SIGHUP through the real binary, file
 * watching in-process), per-address throttling of failed credentials, the state store's disk
 * full or read-only, and the drain of a long stream.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startSlowReader, startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await sleep(20)
  }
  assert.fail(`timed out waiting for ${what}`)
}

/** A GET on a fresh connection from `localAddress` (any 127.x address works on Linux loopback). */
function get(url: string, opts: { key?: string; localAddress?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.key !== undefined) headers.authorization = `Bearer ${opts.key}`
    const req = http.request(url, { agent: false, headers, ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) }, (res) => {
      let t = ''
      res.on('data', (c: Buffer) => (t += c.toString('utf8')))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: t }))
    })
    req.on('error', reject)
    req.end()
  })
}

const K1 = 'reload-key-one-4d1f9a'
const K2 = 'reload-key-two-8c2e7b'

function keysYaml(upstream: string, keys: string[], extra = ''): string {
  return `tls:\n  enabled: false\nupstream:\n  url: ${upstream}\nauthentication:\n  apikey:\n    enabled: true\n    allowedKeys: [${keys.join(', ')}]\n    users: [alice]\n${extra}`
}

/** The real binary with a config file in a temp dir and a recording upstream; `stop` cleans up. */
interface Served {
  up: RecordingUpstream
  cfg: string
  gh: ServeProcess
  stop(): Promise<void>
}

async function serveWithConfig(extraYaml = ''): Promise<Served> {
  const up = await startUpstream()
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-reload-'))
  const cfg = path.join(dir, 'proxy.yaml')
  writeFileSync(cfg, keysYaml(up.url, [K1], extraYaml))
  const gh = await startServe({ GATEHOUSE_STATE_DIR: path.join(dir, 'state') }, { cwd: dir, args: ['--config', cfg] })
  return {
    up,
    cfg,
    gh,
    async stop() {
      if (gh.child.exitCode === null) gh.child.kill('SIGKILL')
      await gh.exited
      await up.close()
      rmSync(dir, { recursive: true, force: true })
      assertNoSecretsInLogs([...gh.stdout, ...gh.stderr])
    },
  }
}

describe('reload: SIGHUP through the real binary', () => {
  let up: RecordingUpstream
  let cfg: string
  let gh: ServeProcess
  let served: Served

  before(async () => {
    usedSecrets.add(K1)
    usedSecrets.add(K2)
    served = await serveWithConfig()
    ;({ up, cfg, gh } = served)
  })
  after(() => served.stop())

  const logged = (msg: string): number => gh.stdout.filter((l) => l.includes(msg)).length

  it('an invalid new config is rejected with every problem logged, and the old one keeps serving', async () => {
    assert.equal((await get(`${gh.dataUrl}/a`, { key: K1 })).status, 200)
    // Two problems at once: an empty key and no users.
    writeFileSync(cfg, `tls:\n  enabled: false\nupstream:\n  url: ${up.url}\nauthentication:\n  apikey:\n    enabled: true\n    allowedKeys: [${K2}, ""]\n    users: []\n`)
    const before = logged('reload rejected')
    gh.child.kill('SIGHUP')
    await until('the rejection to be logged', () => logged('reload rejected') > before)
    const line = gh.stdout.filter((l) => l.includes('reload rejected')).at(-1) as string
    const problems = (JSON.parse(line) as { problems: string[] }).problems
    assert.ok(problems.length >= 2, `every problem is listed: ${line}`)
    assert.ok(problems.some((p) => p.includes('allowedKeys')) && problems.some((p) => p.includes('users')), line)
    assert.equal((await get(`${gh.dataUrl}/a`, { key: K1 })).status, 200, 'the old key still works')
    assert.equal((await get(`${gh.dataUrl}/a`, { key: K2 })).status, 401)
    assert.equal(gh.child.exitCode, null)
  })

  it('a valid new config takes effect for the next request; a request in flight during the reload completes', async () => {
    up.reset()
    // A slow upload in flight across the reload.
    const u = new URL(`${gh.dataUrl}/upload`)
    const inflight = new Promise<number>((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false, headers: { authorization: `Bearer ${K1}`, 'content-length': '3000' } }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      req.on('error', reject)
      req.write(Buffer.alloc(1000))
      setTimeout(() => req.write(Buffer.alloc(1000)), 300)
      setTimeout(() => req.end(Buffer.alloc(1000)), 600)
    })
    await until('the upload to reach the upstream', () => up.requests.some((r) => r.url === '/upload'))
    writeFileSync(cfg, keysYaml(up.url, [K2]))
    const before = logged('reloaded the configuration')
    gh.child.kill('SIGHUP')
    await until('the reload to be logged', () => logged('reloaded the configuration') > before)
    assert.equal((await get(`${gh.dataUrl}/b`, { key: K2 })).status, 200, 'the new key works at once')
    assert.equal((await get(`${gh.dataUrl}/b`, { key: K1 })).status, 401, 'the removed key is refused at once')
    assert.equal(await inflight, 200, 'the request in flight during the reload was not failed')
    assert.equal(up.requests.find((r) => r.url === '/upload')?.bodyBytes, 3000)
  })

  it('no request fails while reloads happen under a steady stream of requests', async () => {
    let failures = 0
    let done = 0
    let stop = false
    const load = (async () => {
      while (!stop && done < 2000) {
        const r = await get(`${gh.dataUrl}/c`, { key: K2 })
        if (r.status !== 200) failures++
        done++
      }
    })()
    for (let i = 0; i < 5; i++) {
      // Alternate a header the upstream sees, so every reload really swaps the runtime.
      writeFileSync(cfg, keysYaml(up.url, [K2], `limits:\n  maxUrlBytes: ${4096 + i}\n`))
      gh.child.kill('SIGHUP')
      await sleep(120)
    }
    stop = true
    await load
    assert.ok(done > 10, `requests were sent during the reloads (${done})`)
    assert.equal(failures, 0)
  })

  it('a change to a key that needs a restart (workers) is named in a warning and the process keeps serving as it was', async () => {
    writeFileSync(cfg, keysYaml(up.url, [K2], 'workers: 3\n'))
    const before = logged('take effect only after a restart')
    gh.child.kill('SIGHUP')
    await until('the restart warning', () => logged('take effect only after a restart') > before)
    assert.match(gh.stdout.filter((l) => l.includes('take effect only after a restart')).at(-1) as string, /"workers"/)
    assert.equal((await get(`${gh.dataUrl}/d`, { key: K2 })).status, 200)
  })
})

describe('reload: SIGHUP to the primary of workers: 2 reloads every worker', () => {
  let up: RecordingUpstream
  let cfg: string
  let gh: ServeProcess
  let served: Served

  before(async () => {
    served = await serveWithConfig('workers: 2\n')
    ;({ up, cfg, gh } = served)
    // startServe returns at the first worker's ready line; wait for the second.
    await until('both workers', () => gh.stdout.filter((l) => l.includes('"gatehouse is ready"')).length >= 2, 15_000)
  })
  after(() => served.stop())

  it('after one SIGHUP the new key works on every connection (whichever worker takes it) and the old one nowhere', async () => {
    writeFileSync(cfg, keysYaml(up.url, [K2], 'workers: 2\n'))
    gh.child.kill('SIGHUP')
    await until('both workers to reload', () => gh.stdout.filter((l) => l.includes('reloaded the configuration')).length >= 2, 10_000)
    const results = await Promise.all(Array.from({ length: 20 }, () => get(`${gh.dataUrl}/w`, { key: K2 })))
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]))
    const old = await Promise.all(Array.from({ length: 20 }, () => get(`${gh.dataUrl}/w`, { key: K1 })))
    assert.deepEqual(new Set(old.map((r) => r.status)), new Set([401]))
  })
})

describe('reload: reload.watch picks up a changed API-key file', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  let keysFile: string

  before(async () => {
    up = await startUpstream()
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-watch-'))
    keysFile = path.join(dir, 'keys')
    writeFileSync(keysFile, `${K1}\n`)
    gh = await startProxy({ yaml: `tls:\n  enabled: false\nupstream:\n  url: ${up.url}\nreload:\n  watch: true\n  watchInterval: 100ms\nauthentication:\n  apikey:\n    enabled: true\n    allowedKeysFile: ${keysFile}\n    users: [alice]\n` })
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('rotating the key file (as a Secret update does) swaps the keys without a signal', async () => {
    assert.equal((await gh.request('/x', { token: K1 })).status, 200)
    assert.equal((await gh.request('/x', { token: K2 })).status, 401)
    writeFileSync(keysFile, `${K2}\n`)
    await until('the new key to work', async () => (await gh.request('/x', { token: K2 })).status === 200)
    assert.equal((await gh.request('/x', { token: K1 })).status, 401)
  })

  it('reload() itself reports what changed', async () => {
    writeFileSync(keysFile, `${K1}\n${K2}\n`)
    const r = await gh.server.reload()
    assert.equal(r.ok, true)
    assert.equal((await gh.request('/x', { token: K1 })).status, 200)
  })
})

describe('throttling of failed credentials per client address', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  const GOOD = 'throttle-good-key-5e8f1c'

  before(async () => {
    up = await startUpstream()
    gh = await startProxy({
      yaml: `tls:\n  enabled: false\nupstream:\n  url: ${up.url}\nauthentication:\n  failureThrottle:\n    maxFailures: 5\n    window: 60s\n    blockDuration: 1s\n  apikey:\n    enabled: true\n    allowedKeys: [${GOOD}]\n    users: [alice]\n`,
    })
    usedSecrets.add(GOOD)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('the 6th wrong key from one address is 429 with Retry-After; even the right key is refused then, and nothing reaches the upstream', async () => {
    up.reset()
    for (let i = 0; i < 5; i++) assert.equal((await get(`${gh.url}/guess`, { key: `wrong-key-${i}-xxxxxx`, localAddress: '127.0.0.2' })).status, 401)
    const blocked = await get(`${gh.url}/guess`, { key: 'wrong-key-6-xxxxxx', localAddress: '127.0.0.2' })
    assert.equal(blocked.status, 429)
    assert.equal((JSON.parse(blocked.text) as { reason: string }).reason, 'ERR_TOO_MANY_FAILURES')
    assert.match(String(blocked.headers['retry-after']), /^[1-9][0-9]*$/)
    const right = await get(`${gh.url}/guess`, { key: GOOD, localAddress: '127.0.0.2' })
    assert.equal(right.status, 429, 'a blocked address learns nothing, not even from the right key')
    assert.equal(up.requests.length, 0)
  })

  it('another address is not locked out by the first one', async () => {
    assert.equal((await get(`${gh.url}/ok`, { key: GOOD, localAddress: '127.0.0.3' })).status, 200)
  })

  it('requests without a credential are not counted or blocked (public paths and 401 stay as they were)', async () => {
    const r = await get(`${gh.url}/ok`, { localAddress: '127.0.0.2' })
    assert.equal(r.status, 401)
    assert.equal((JSON.parse(r.text) as { reason: string }).reason, 'ERR_UNAUTHENTICATED')
  })

  it('after blockDuration the address may try again and the right key works', async () => {
    await sleep(1100)
    assert.equal((await get(`${gh.url}/ok`, { key: GOOD, localAddress: '127.0.0.2' })).status, 200)
  })

  it('the access log names the reason, never the guessed keys', () => {
    assert.ok(gh.logs.some((l) => l.includes('ERR_TOO_MANY_FAILURES')))
    assertNoSecretsInLogs(gh.logs, ['wrong-key-0-xxxxxx', 'wrong-key-6-xxxxxx'])
  })
})

describe('throttling behind a trusted proxy keys on the client address from X-Forwarded-For', () => {
  let up: RecordingUpstream
  let gh: TestProxy
  const GOOD = 'throttle-xff-key-9a7d3e'

  before(async () => {
    up = await startUpstream()
    gh = await startProxy({
      yaml: `tls:\n  enabled: false\ntrustedProxies: [127.0.0.1]\nupstream:\n  url: ${up.url}\nauthentication:\n  failureThrottle:\n    maxFailures: 3\n  apikey:\n    enabled: true\n    allowedKeys: [${GOOD}]\n    users: [alice]\n`,
    })
    usedSecrets.add(GOOD)
  })
  after(async () => {
    await gh.stop()
    await up.close()
  })

  it('one client behind the load balancer is blocked; another behind the same balancer is not', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await get(`${gh.url}/g`, { key: `bad-xff-${i}-yyyyyy`, headers: { 'x-forwarded-for': '203.0.113.9' } })).status, 401)
    assert.equal((await get(`${gh.url}/g`, { key: GOOD, headers: { 'x-forwarded-for': '203.0.113.9' } })).status, 429)
    assert.equal((await get(`${gh.url}/g`, { key: GOOD, headers: { 'x-forwarded-for': '203.0.113.10' } })).status, 200)
    // A forged extra hop on the left does not help: the right-most untrusted entry is the key.
    assert.equal((await get(`${gh.url}/g`, { key: GOOD, headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' } })).status, 429)
  })
})

/** Mount a tmpfs (root with CAP_SYS_ADMIN); undefined when this machine does not allow it. */
function mountTmpfs(dir: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

describe('the state store’s disk full or read-only: login fails with 503, other authentication continues', () => {
  let up: RecordingUpstream
  let issuer: TestIssuer
  let gh: TestProxy
  let mnt: string
  let mounted = false
  const KEY = 'store-fail-api-key-3b9c0d'
  const PASSWORD = 'Store-Failure-Pass-1'

  before(async () => {
    up = await startUpstream()
    issuer = await startIssuer()
    mnt = mkdtempSync(path.join(tmpdir(), 'gh-storefail-'))
    mounted = mountTmpfs(mnt, '2m')
    mkdirSync(path.join(mnt, 'state'))
    usedSecrets.add(KEY)
    usedSecrets.add(PASSWORD)
    gh = await startProxy({
      env: { GATEHOUSE_STATE_DIR: path.join(mnt, 'state') },
      yaml: `tls:\n  enabled: false\nupstream:\n  url: ${up.url}\nauthentication:\n  apikey:\n    enabled: true\n    allowedKeys: [${KEY}]\n    users: [alice]\n  oidc:\n    enabled: true\n    issuer: ${issuer.url}\n    clientId: gatehouse\n    usernameClaim: sub\n  local:\n    enabled: true\n    initialAdminPassword: ${PASSWORD}\n`,
    })
    await until('the issuer keys', async () => (await gh.admin('/readyz')).status === 200)
  })
  after(async () => {
    await gh.stop()
    if (mounted) execFileSync('umount', ['-l', mnt])
    rmSync(mnt, { recursive: true, force: true })
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs(gh.logs)
  })

  const login = (): Promise<{ status: number; json: () => { reason?: string; data?: { access_token: string } } }> =>
    gh.admin('/api/v2/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: PASSWORD }) })

  async function checkDegraded(localToken: string): Promise<void> {
    const l = await login()
    assert.equal(l.status, 503)
    assert.equal(l.json().reason, 'ERR_STORE_UNAVAILABLE')
    // A user creation fails as a whole: afterwards the user does not exist.
    const c = await gh.admin('/api/v2/users', { method: 'POST', token: localToken, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'newbie', password: 'Newbie-Pass-77', role: 'regular' }) })
    assert.equal(c.status, 503)
    const list = (await gh.admin('/api/v2/users', { token: localToken })).text
    assert.doesNotMatch(list, /newbie/, 'a failed write leaves no half-created user behind')
    up.reset()
    assert.equal((await gh.request('/k', { token: KEY })).status, 200, 'API keys keep working')
    assert.equal((await gh.request('/o', { token: await issuer.sign({ sub: 'olga', aud: 'gatehouse' }) })).status, 200, 'OIDC keeps working')
    assert.equal((await gh.request('/l', { token: localToken })).status, 200, 'an issued local token keeps working')
    assert.equal(up.requests.length, 3)
  }

  it('disk full (ENOSPC): 503 ERR_STORE_UNAVAILABLE for login and user creation; keys, OIDC and issued tokens work; freeing space heals it', async (t) => {
    if (!mounted) {
      t.skip('cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the read-only case below still runs')
      return
    }
    const first = await login()
    assert.equal(first.status, 200)
    const token = first.json().data?.access_token as string
    usedSecrets.add(token)
    const filler = path.join(mnt, 'filler')
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k', 'count=64'], { stdio: 'ignore' })
    } catch {
      // dd stops with "No space left on device": exactly what we want.
    }
    await checkDegraded(token)
    rmSync(filler)
    assert.equal((await login()).status, 200, 'login works again once there is space')
  })

  it('read-only state directory: the same, and it heals when writable again', async () => {
    const first = await login()
    assert.equal(first.status, 200)
    const token = first.json().data?.access_token as string
    usedSecrets.add(token)
    const store = path.join(mnt, 'state', 'store')
    const readOnly = (on: boolean): void => {
      if (mounted) execFileSync('mount', ['-o', `remount,${on ? 'ro' : 'rw'}`, mnt])
      else execFileSync('chmod', [on ? '0500' : '0700', store])
    }
    readOnly(true)
    try {
      await checkDegraded(token)
    } finally {
      readOnly(false)
    }
    assert.equal((await login()).status, 200)
  })
})

describe('listen.timeouts.body blames only the client', () => {
  it('an upstream that stops reading for 2.5 s (backpressure) does not turn an 8 MiB upload into a 408 with a 1 s body timeout', async () => {
    const slowReader = await startSlowReader(2500)
    const gh = await startProxy({ yaml: `tls:\n  enabled: false\nlisten:\n  timeouts:\n    body: 1s\nupstream:\n  url: ${slowReader.url}\n` })
    try {
      const SIZE = 8 * 1024 * 1024
      const r = await gh.request('/upload', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(SIZE, 7) })
      assert.equal(r.status, 200, r.text)
      assert.equal(slowReader.received(), SIZE)
    } finally {
      await gh.stop()
      await slowReader.close()
    }
  })
})

describe('drain: SIGTERM lets a long stream finish within the grace period', () => {
  it('a 1.5 s streamed download in flight completes in full; new connections are refused meanwhile', async () => {
    const CHUNKS = 20
    const streamer = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      let n = 0
      const t = setInterval(() => {
        res.write(Buffer.alloc(1024, 1))
        if (++n === CHUNKS) {
          clearInterval(t)
          res.end()
        }
      }, 75)
    })
    await new Promise<void>((r) => streamer.listen(0, '127.0.0.1', r))
    const gh = await startProxy({ env: { GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_UPSTREAM_URL: `http://127.0.0.1:${(streamer.address() as AddressInfo).port}` } })
    try {
      const u = new URL(`${gh.url}/stream`)
      let firstByte: () => void = () => {}
      const started = new Promise<void>((r) => (firstByte = r))
      const got = new Promise<{ bytes: number; complete: boolean }>((resolve, reject) => {
        http
          .get({ host: u.hostname, port: u.port, path: u.pathname, agent: false }, (res) => {
            let bytes = 0
            res.on('data', (c: Buffer) => {
              bytes += c.length
              firstByte()
            })
            res.on('end', () => resolve({ bytes, complete: res.complete }))
            res.on('error', reject)
          })
          .on('error', reject)
      })
      await started
      const stopping = gh.server.stop(5000)
      await sleep(100)
      const refused = await get(`${gh.url}/new`).then(
        () => 'accepted',
        (e: NodeJS.ErrnoException) => e.code,
      )
      assert.equal(refused, 'ECONNREFUSED')
      const r = await got
      assert.equal(r.bytes, CHUNKS * 1024)
      assert.equal(r.complete, true)
      await stopping
    } finally {
      await gh.stop()
      await new Promise<void>((r) => streamer.close(() => r()))
    }
  })
})
