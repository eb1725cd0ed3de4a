/**
 * Browser sign-in with `workers: 2` (the real binary): the flow cookie carries the whole
 * pending sign-in, so a callback served by another worker than the start works; a session made
 * by one worker authenticates on the other (the primary's store, over IPC); and a refresh done by
 * one worker is stored with `updateSessionOidc` in one IPC operation, so the other worker sees
 * the new expiry and does not refresh again.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startServe, type ServeProcess } from '../helpers/cli.ts'
import { providerLogin, startOidcProvider, type OidcProvider, browserLoginEnv } from '../helpers/oidcProvider.ts'
import { sleep } from '../helpers/rawClient.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const SESSION = '__Host-gatehouse-session'
const FLOW = '__Host-gatehouse-flow'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
}

describe('browser sign-in across workers', () => {
  let dir: string
  let op: OidcProvider
  let up: RecordingUpstream
  let gh: ServeProcess
  let ca: string

  /** One request on a new connection (so the cluster may hand it to either worker). */
  const get = (p: string, headers: Record<string, string> = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const u = new URL(p, gh.dataUrl)
      const req = https.get({ host: u.hostname, port: u.port, path: u.pathname + u.search, ca, servername: 'localhost', agent: false, headers }, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
      })
      req.on('error', reject)
    })
  const cookieOf = (a: Answer, name: string): string | undefined => ([] as string[]).concat(a.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${name}=`))?.slice(name.length + 1).split(';')[0]

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-browser-workers-'))
    op = await startOidcProvider()
    up = await startUpstream()
    gh = await startServe(
      {
        GATEHOUSE_WORKERS: '2',
        GATEHOUSE_STATE_DIR: path.join(dir, 'state'),
        GATEHOUSE_TLS_ENABLED: 'true',
        GATEHOUSE_UPSTREAM_URL: up.url,
        ...browserLoginEnv(op.issuer),
      },
      { cwd: dir },
    )
    ca = readFileSync(path.join(dir, 'state', 'tls', 'self-signed.crt'), 'utf8')
    // Access tokens of 62 s: gatehouse refreshes them after 2 s.
    await op.enableBrowserClient({ redirectUris: [`${gh.dataUrl}/oauth2/callback`], accessTokenTtl: 62 })
  })

  after(async () => {
    gh?.child.kill('SIGTERM')
    await gh?.exited
    await up?.close()
    await op?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('a session made by one worker works on both, and one refresh serves both', async () => {
    const start = await get('/oauth2/start?rd=%2Fw')
    const flow = cookieOf(start, FLOW) as string
    const cb = await providerLogin(start.headers.location as string, 'frank', `${gh.dataUrl}/oauth2/callback`)
    const done = await get(`/oauth2/callback${cb.search}`, { cookie: `${FLOW}=${flow}` })
    assert.equal(done.status, 302)
    const id = cookieOf(done, SESSION) as string
    assert.ok(id !== undefined)
    up.reset()
    for (let i = 0; i < 12; i++) assert.equal((await get('/w', { cookie: `${SESSION}=${id}` })).status, 200)
    assert.ok(up.requests.every((r) => r.headers['x-forwarded-user'] === 'frank'))
    await sleep(2200)
    const refreshes = (): number => op.tokenGrants.filter((g) => g === 'refresh_token').length
    // Each request on a new connection: Node's cluster hands connections to the workers in turn
    // (round-robin, its default on Linux), so both workers see the session. Had the second
    // worker not seen the stored refresh, it would have refreshed again.
    for (let i = 0; i < 12; i++) assert.equal((await get('/w', { cookie: `${SESSION}=${id}` })).status, 200)
    assert.equal(refreshes(), 1, 'one refresh, stored for every worker')
  })
})
