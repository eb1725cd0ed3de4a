/**
 * Session tickets with `workers: 2` through the real binary: one ticket key for all workers, so
 * a session from one worker resumes on the other (TLS 1.3 and 1.2), and after the key is
 * replaced (`tls.ticketKeyRotation`) old tickets do a full handshake while new ones resume on
 * every worker again. The key itself never reaches a log line.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import tls from 'node:tls'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { assertNoSecretsInLogs } from '../helpers/proxy.ts'

/** The rotation period of this test; rounds are placed inside one period (see `inOnePeriod`). */
const PERIOD_MS = 3000
/** Keep clear of a boundary by this much: the primary's new key reaches the workers over IPC. */
const MARGIN_MS = 300

interface Conn {
  reused: boolean
  /** The process that holds the server side of this connection. */
  pid: number
  session: Buffer | undefined
}

/** The pid of the process whose socket is connected to this local port (ss -p). */
function serverPid(clientPort: number): number {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( dport = :${clientPort} )`], { encoding: 'utf8' })
  const m = /pid=(\d+)/.exec(out)
  assert.ok(m, `no server socket for client port ${clientPort}: ${out}`)
  return Number(m[1])
}

describe('TLS session tickets with workers: 2', () => {
  let gh: ServeProcess
  let dir: string
  let ca: Buffer
  let port: number

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-tickets-'))
    const cfg = path.join(dir, 'gatehouse.yaml')
    writeFileSync(cfg, `workers: 2\ntls:\n  ticketKeyRotation: ${PERIOD_MS}ms\n`)
    gh = await startServe({ GATEHOUSE_STATE_DIR: path.join(dir, 'state') }, { cwd: dir, args: ['--config', cfg] })
    for (let i = 0; i < 100 && gh.stdout.filter((l) => l.includes('"gatehouse is ready"')).length < 2; i++) await new Promise((r) => setTimeout(r, 50))
    ca = readFileSync(path.join(dir, 'state', 'tls', 'ca.crt'))
    port = Number(new URL(gh.dataUrl).port)
  })
  after(async () => {
    gh.child.kill('SIGTERM')
    assert.equal(await gh.exited, 0)
    const logs = [...gh.stdout, ...gh.stderr]
    assertNoSecretsInLogs(logs)
    // The key travels as 96 hex digits over IPC; no log line carries anything of that shape.
    for (const l of logs) assert.doesNotMatch(l, /[0-9a-f]{96}/i)
    rmSync(dir, { recursive: true, force: true })
  })

  /** One connection with one request, as a client does; the last ticket the server sent. */
  function connect(version: 'TLSv1.2' | 'TLSv1.3', session?: Buffer): Promise<Conn> {
    return new Promise((resolve, reject) => {
      let last: Buffer | undefined
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, minVersion: version, maxVersion: version, session, ALPNProtocols: ['http/1.1'] })
      s.on('session', (b: Buffer) => (last = b))
      s.on('error', reject)
      let pid = 0
      let reused = false
      s.once('secureConnect', () => {
        reused = s.isSessionReused()
        try {
          pid = serverPid(s.localPort as number)
        } catch (e) {
          reject(e as Error)
        }
        s.end('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
      })
      s.resume()
      s.on('close', () => resolve({ reused, pid, session: last }))
    })
  }

  /** Run `fn` inside one rotation period, starting just after a boundary; retry if it ran over. */
  async function inOnePeriod<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const into = Date.now() % PERIOD_MS
      await new Promise((r) => setTimeout(r, (PERIOD_MS - into + MARGIN_MS) % PERIOD_MS))
      const start = Date.now()
      const r = await fn()
      if (Math.floor((Date.now() + MARGIN_MS) / PERIOD_MS) === Math.floor(start / PERIOD_MS)) return r
    }
    throw new Error('could not fit a round into one rotation period')
  }

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${version}: a ticket from the first connection resumes on both workers`, async () => {
      const conns = await inOnePeriod(async () => {
        const first = await connect(version)
        assert.equal(first.reused, false)
        assert.ok(first.session, 'the server sent a ticket')
        const rest: Conn[] = []
        for (let i = 0; i < 10; i++) rest.push(await connect(version, first.session))
        return [first, ...rest]
      })
      assert.deepEqual(conns.slice(1).map((c) => c.reused), Array(10).fill(true))
      assert.equal(new Set(conns.map((c) => c.pid)).size, 2, 'both workers served')
    })
  }

  it('after a rotation, an old ticket does a full handshake and a new one resumes on both workers', async () => {
    const old = await inOnePeriod(() => connect('TLSv1.3'))
    assert.ok(old.session)
    await new Promise((r) => setTimeout(r, MARGIN_MS))
    // Into the next period: the key has been replaced on every worker.
    const { stale, fresh } = await inOnePeriod(async () => {
      const stale: Conn[] = []
      for (let i = 0; i < 4; i++) stale.push(await connect('TLSv1.3', old.session))
      const first = await connect('TLSv1.3')
      const fresh: Conn[] = []
      for (let i = 0; i < 6; i++) fresh.push(await connect('TLSv1.3', first.session))
      return { stale, fresh }
    })
    assert.deepEqual(stale.map((c) => c.reused), [false, false, false, false])
    assert.equal(new Set(stale.map((c) => c.pid)).size, 2, 'both workers refused the old ticket')
    assert.deepEqual(fresh.map((c) => c.reused), Array(6).fill(true))
    assert.equal(new Set(fresh.map((c) => c.pid)).size, 2, 'both workers resumed the new ticket')
  })
})
