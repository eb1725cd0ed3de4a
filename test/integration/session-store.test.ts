/**
 * Sessions in the real FileStore (temporary state directory): persistence across reopen, idle and
 * absolute expiry with a fake clock (only time is mocked), revocation by token generation, and
 * revoke-tokens / password change / user deletion through the real admin API ending a user's sessions.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { loadConfig } from '../../src/config/load.ts'
import { createLogger } from '../../src/log.ts'
import { startServer, type RunningServer } from '../../src/server/serve.ts'
import { hashSessionId } from '../../src/session/id.ts'
import { DEFAULT_ABSOLUTE_LIFETIME_MS, DEFAULT_IDLE_TIMEOUT_MS, SessionManager } from '../../src/session/manager.ts'
import { openTokens } from '../../src/session/tokens.ts'
import { FileStore } from '../../src/store/fileStore.ts'
import { assertNoSecretsInLogs, usedSecrets } from '../helpers/proxy.ts'

const MIN = 60_000

function tempDir(t: string): string {
  return mkdtempSync(path.join(tmpdir(), `gh-session-${t}-`))
}

/** A clock that moves only when told. */
function fakeClock(start = Date.now()): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms) => void (t += ms) }
}

const alice = { kind: 'console' as const, username: 'alice', method: 'local' as const, groups: ['admin'], generation: 0 }

describe('sessions in the FileStore', () => {
  const dirs: string[] = []
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })
  function open(opts: { sessionTouchPersistMs?: number } = {}): { dir: string; store: FileStore } {
    const dir = tempDir('fs')
    dirs.push(dir)
    return { dir, store: new FileStore(dir, opts) }
  }

  it('defaults: 30 minutes idle (Weka’s GUI), 12 hours absolute', async () => {
    const { store } = open()
    const clock = fakeClock()
    const { session } = await new SessionManager(store, { now: clock.now }).create({ ...alice, method: 'oidc', generation: undefined })
    assert.equal(DEFAULT_IDLE_TIMEOUT_MS, 30 * MIN)
    assert.equal(DEFAULT_ABSOLUTE_LIFETIME_MS, 12 * 60 * MIN)
    assert.equal(session.idleTimeoutMs, 30 * MIN)
    assert.equal(session.expiresAt - session.createdAt, 12 * 60 * MIN)
  })

  it('a session survives reopening the store; the file holds its hash and never the id', async () => {
    const { dir, store } = open()
    const clock = fakeClock()
    await store.createUser({ username: 'alice', uid: 'u1', role: 'admin', passwordHash: 'x', mustChangePassword: false, generation: 0, createdAt: 0 })
    const { id, session } = await new SessionManager(store, { now: clock.now }).create({ ...alice, email: 'alice@example.com' })
    assert.equal(session.csrfToken.length, 43)
    const text = readFileSync(path.join(dir, 'store', 'sessions.json'), 'utf8')
    assert.ok(!text.includes(id), 'the id is not stored')
    assert.ok(text.includes(hashSessionId(id)))

    const reopened = new FileStore(dir)
    assert.deepEqual(await reopened.getSession(hashSessionId(id)), session)
    const r = await new SessionManager(reopened, { now: clock.now }).authenticate(id)
    assert.equal(r.ok, true)
    assert.equal(r.ok && r.session.email, 'alice@example.com')
  })

  it('idle timeout: each use extends it; a pause of the full timeout ends it (then it is unknown)', async () => {
    const { store } = open()
    const clock = fakeClock()
    const m = new SessionManager(store, { now: clock.now, idleTimeoutMs: 3000, absoluteLifetimeMs: 60 * MIN })
    const { id } = await m.create({ ...alice, method: 'oidc', generation: undefined })
    for (let i = 0; i < 5; i++) {
      clock.advance(2999)
      assert.equal((await m.authenticate(id)).ok, true, `use ${i}`)
    }
    clock.advance(3000)
    assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'idle-expired' })
    assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'unknown' })
    assert.equal(await store.getSession(hashSessionId(id)), undefined, 'deleted from the store')
  })

  it('absolute lifetime: activity does not extend it', async () => {
    const { store } = open()
    const clock = fakeClock()
    const m = new SessionManager(store, { now: clock.now, idleTimeoutMs: 10 * MIN, absoluteLifetimeMs: 60 * MIN })
    const { id } = await m.create({ ...alice, method: 'oidc', generation: undefined })
    for (let i = 0; i < 11; i++) {
      clock.advance(5 * MIN)
      assert.equal((await m.authenticate(id)).ok, true, `use ${i}`)
    }
    clock.advance(5 * MIN)
    assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'expired' })
    assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'unknown' })
  })

  it('a touch reaches the disk at most once per interval; a restart sees an older lastSeenAt (the safe side)', async () => {
    const clock = fakeClock()
    for (const [persistMs, expectPersisted] of [[0, true], [60 * MIN, false]] as const) {
      const { dir, store } = open({ sessionTouchPersistMs: persistMs })
      const m = new SessionManager(store, { now: clock.now })
      const { id, session } = await m.create({ ...alice, method: 'oidc', generation: undefined })
      clock.advance(MIN)
      await m.authenticate(id)
      const onDisk = await new FileStore(dir).getSession(hashSessionId(id))
      assert.equal(onDisk?.lastSeenAt, expectPersisted ? session.lastSeenAt + MIN : session.lastSeenAt, `persist every ${persistMs} ms`)
    }
  })

  it('expired sessions are swept on reopen and when new ones are stored', async () => {
    const { dir, store } = open()
    const old = fakeClock(Date.now() - 13 * 60 * MIN)
    const { id: stale } = await new SessionManager(store, { now: old.now }).create({ ...alice, method: 'oidc', generation: undefined })
    assert.equal(await new FileStore(dir).getSession(hashSessionId(stale)), undefined, 'swept on reopen')
    const { id: stale2 } = await new SessionManager(store, { now: old.now, idleTimeoutMs: 1000, absoluteLifetimeMs: 1000 }).create({ ...alice, method: 'oidc', generation: undefined })
    await new SessionManager(store).create({ ...alice, method: 'oidc', generation: undefined })
    assert.equal(await store.getSession(hashSessionId(stale2)), undefined, 'swept by putSession')
  })

  it('a local user’s session is refused once the token generation moved on, even without the active deletion', async () => {
    const { store } = open()
    await store.createUser({ username: 'alice', uid: 'u1', role: 'admin', passwordHash: 'x', mustChangePassword: false, generation: 0, createdAt: 0 })
    const m = new SessionManager(store)
    const { id } = await m.create(alice)
    assert.equal((await m.authenticate(id)).ok, true)
    await store.bumpGeneration('alice')
    assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'revoked' })
    assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'unknown' })
    const { id: other } = await m.create({ ...alice, username: 'ghost' })
    assert.deepEqual(await m.authenticate(other), { ok: false, reason: 'revoked' }, 'a user that does not exist')
  })

  it('end, endAllOf (all methods or one), and tampered or malformed cookie values', async () => {
    const { store } = open()
    const m = new SessionManager(store)
    const a1 = await m.create({ ...alice, method: 'oidc', generation: undefined })
    const a2 = await m.create({ ...alice, kind: 'browser', method: 'oidc', generation: undefined })
    const a3 = await m.create({ ...alice, kind: 'browser', method: 'oidc', generation: undefined })
    const b = await m.create({ ...alice, username: 'bob', method: 'oidc', generation: undefined })
    const tampered = `${a1.id.slice(0, -1)}${a1.id.endsWith('A') ? 'B' : 'A'}`
    for (const v of [tampered, undefined, '', 'x', `${a1.id}=`]) assert.deepEqual(await m.authenticate(v), { ok: false, reason: 'unknown' }, String(v))
    assert.equal(await m.end(a1.id), true)
    assert.equal(await m.end(a1.id), false)
    assert.equal(await m.endAllOf('alice', 'local'), 0, 'a filter by method spares OIDC sessions of the same name')
    assert.equal(await m.endAllOf('alice'), 2)
    for (const s of [a2, a3]) assert.deepEqual(await m.authenticate(s.id), { ok: false, reason: 'unknown' })
    assert.equal((await m.authenticate(b.id)).ok, true, 'another user keeps theirs')
  })

  it('an OIDC session keeps its tokens sealed under the id: the store alone cannot open them', async () => {
    const { dir, store } = open()
    const m = new SessionManager(store)
    const tokens = { refreshToken: 'rt-0123456789-secret', idToken: 'id.token.value', expiresAt: Date.now() + 300_000 }
    const { id, session } = await m.create({ kind: 'browser', username: 'carol', method: 'oidc', groups: ['readers'], oidc: { issuer: 'https://idp.example', tokens } })
    assert.ok(!readFileSync(path.join(dir, 'store', 'sessions.json'), 'utf8').includes('rt-0123456789-secret'))
    assert.equal(session.oidc?.issuer, 'https://idp.example')
    assert.deepEqual(openTokens(id, session.oidc?.sealed as string), tokens)
  })

  it('parameters are checked where they enter', async () => {
    const { store } = open()
    assert.throws(() => new SessionManager(store, { idleTimeoutMs: 0 }), TypeError)
    assert.throws(() => new SessionManager(store, { idleTimeoutMs: 10 * MIN, absoluteLifetimeMs: MIN }), TypeError)
    await assert.rejects(() => new SessionManager(store).create({ ...alice, generation: undefined }), TypeError)
  })
})

describe('revoke-tokens, password change and user deletion through the admin API end sessions', () => {
  const ADMIN_PW = 'Sess10n-admin-pw'
  const DAVE_PW = 'Dave-pass-123'
  let dir: string
  let store: FileStore
  let server: RunningServer
  const logs: string[] = []
  let admin: string

  async function call(p: string, method = 'GET', body?: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await request(`${server.adminUrl}${p}`, { method: method as 'GET', headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) }, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await r.body.text()
    return { status: r.statusCode, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
  }
  async function login(username: string, password: string): Promise<string> {
    const r = await call('/api/v2/login', 'POST', { username, password })
    assert.equal(r.status, 200)
    const t = (r.json.data as { access_token: string; refresh_token: string })
    usedSecrets.add(t.access_token).add(t.refresh_token)
    return t.access_token
  }

  before(async () => {
    usedSecrets.add(ADMIN_PW).add(DAVE_PW)
    dir = tempDir('api')
    const env = { GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1', GATEHOUSE_STATE_DIR: path.join(dir, 'state'), GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: ADMIN_PW, GATEHOUSE_LOG_LEVEL: 'trace' }
    const r = loadConfig({ env, cwd: dir })
    assert.ok(r.config !== undefined, JSON.stringify(r.problems))
    // The server's own store, so the test can create sessions in it (the console will, later).
    store = new FileStore(r.config.stateDir)
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''))
        cb()
      },
    })
    server = await startServer(r.config, createLogger('trace', sink), { store, load: { env, cwd: dir } })
    admin = await login('admin', ADMIN_PW)
    assert.equal((await call('/api/v2/users', 'POST', { username: 'dave', password: DAVE_PW, role: 'regular' }, admin)).status, 201)
  })
  after(async () => {
    await server.stop(1000)
    rmSync(dir, { recursive: true, force: true })
    assertNoSecretsInLogs(logs)
  })

  async function sessionsOf(username: string): Promise<{ m: SessionManager; ids: string[] }> {
    const m = new SessionManager(store)
    const generation = (await store.getUser(username))?.generation as number
    const ids: string[] = []
    for (const kind of ['console', 'browser'] as const) ids.push((await m.create({ kind, username, method: 'local', groups: ['regular'], generation })).id)
    for (const id of ids) usedSecrets.add(id)
    return { m, ids }
  }
  async function assertEnded(m: SessionManager, ids: string[]): Promise<void> {
    for (const id of ids) {
      assert.equal(await store.getSession(hashSessionId(id)), undefined, 'deleted from the store')
      assert.deepEqual(await m.authenticate(id), { ok: false, reason: 'unknown' })
    }
  }

  it('DELETE /api/v2/users/{user}/revoke ends every session of that user, and only theirs', async () => {
    const { m, ids } = await sessionsOf('dave')
    const oidcNamesake = await m.create({ kind: 'browser', username: 'dave', method: 'oidc', groups: [] })
    const adminSessions = await sessionsOf('admin')
    for (const id of ids) assert.equal((await m.authenticate(id)).ok, true)
    assert.equal((await call('/api/v2/users/dave/revoke', 'DELETE', undefined, admin)).status, 200)
    await assertEnded(m, ids)
    assert.equal((await m.authenticate(oidcNamesake.id)).ok, true, 'an OIDC user of the same name is another person')
    for (const id of adminSessions.ids) assert.equal((await m.authenticate(id)).ok, true, 'other users keep theirs')
  })

  it('a password change (own, and set by an admin) ends every session of that user', async () => {
    let { m, ids } = await sessionsOf('dave')
    const dave = await login('dave', DAVE_PW)
    assert.equal((await call('/api/v2/users/password', 'PUT', { old_password: DAVE_PW, new_password: 'Dave-pass-456' }, dave)).status, 200)
    usedSecrets.add('Dave-pass-456')
    await assertEnded(m, ids)
    ;({ m, ids } = await sessionsOf('dave'))
    assert.equal((await call('/api/v2/users/password', 'PUT', { username: 'dave', new_password: 'Dave-pass-789' }, admin)).status, 200)
    usedSecrets.add('Dave-pass-789')
    await assertEnded(m, ids)
  })

  it('deleting the user ends their sessions', async () => {
    const { m, ids } = await sessionsOf('dave')
    assert.equal((await call('/api/v2/users/dave', 'DELETE', undefined, admin)).status, 200)
    await assertEnded(m, ids)
  })
})
