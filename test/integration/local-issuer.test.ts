/**
 * The local issuer with the clock mocked (the only mock): locks lift after the configured
 * duration, access and refresh tokens expire on time. Real files in a temporary state directory.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { jwtShape } from '../../src/auth/jwtShape.ts'
import { loadConfig } from '../../src/config/load.ts'
import { LocalIssuer } from '../../src/issuer/localIssuer.ts'
import { createLogger } from '../../src/log.ts'
import { FileStore } from '../../src/store/fileStore.ts'

describe('LocalIssuer with a mocked clock', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-issuer-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  let t = Date.UTC(2026, 10, 23, 12, 0, 0)
  const now = (): number => t

  async function open(sub: string): Promise<{ issuer: LocalIssuer; store: FileStore }> {
    const r = loadConfig({ env: { GATEHOUSE_STATE_DIR: path.join(dir, sub), GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: 'Clock-admin-1' }, cwd: dir })
    assert.ok(r.config, JSON.stringify(r.problems))
    const store = new FileStore(r.config.stateDir)
    return { issuer: await LocalIssuer.open(r.config, store, createLogger('silent'), { now }), store }
  }

  it('the lock lifts after lockoutDuration (default 2 minutes), and the count starts afresh', async () => {
    const { issuer } = await open('a')
    for (let i = 0; i < 5; i++) await assert.rejects(issuer.login('admin', 'Wrong-pass-1'), { code: 'ERR_LOGIN_FAILED' })
    await assert.rejects(issuer.login('admin', 'Clock-admin-1'), { code: 'ERR_ACCOUNT_LOCKED' })
    t += 119_000
    await assert.rejects(issuer.login('admin', 'Clock-admin-1'), (e: { code: string; headers: Record<string, string> }) => e.code === 'ERR_ACCOUNT_LOCKED' && e.headers['retry-after'] === '1')
    t += 1_000
    assert.ok((await issuer.login('admin', 'Clock-admin-1')).access_token)
    // A fresh count: one failure does not lock again.
    await assert.rejects(issuer.login('admin', 'Wrong-pass-1'), { code: 'ERR_LOGIN_FAILED' })
    assert.ok((await issuer.login('admin', 'Clock-admin-1')).access_token)
  })

  it('a lock survives a restart (counters are in the store)', async () => {
    const a = await open('b')
    for (let i = 0; i < 5; i++) await assert.rejects(a.issuer.login('admin', 'Wrong-pass-1'))
    const b = await open('b')
    await assert.rejects(b.issuer.login('admin', 'Clock-admin-1'), { code: 'ERR_ACCOUNT_LOCKED' })
  })

  it('access tokens expire after 5 minutes; refresh tokens after a year', async () => {
    const { issuer } = await open('c')
    const set = await issuer.login('admin', 'Clock-admin-1')
    const shape = jwtShape(set.access_token)
    assert.ok(shape)
    assert.equal(set.expires_in, 300)
    assert.equal((await issuer.verify(set.access_token, shape)).user, 'admin')
    t += 301_000
    await assert.rejects(Promise.resolve().then(() => issuer.verify(set.access_token, shape)), { code: 'ERR_TOKEN_EXPIRED' })
    const next = await issuer.refresh(set.refresh_token)
    t += 366 * 86_400_000
    await assert.rejects(issuer.refresh(next.refresh_token), { code: 'ERR_INVALID_REFRESH_TOKEN' })
  })

  it('the signing key and the users survive a restart; tokens stay valid', async () => {
    const a = await open('d')
    const set = await a.issuer.login('admin', 'Clock-admin-1')
    const b = await open('d')
    assert.equal(b.issuer.iss, a.issuer.iss)
    const shape = jwtShape(set.access_token)
    assert.ok(shape)
    assert.equal((await b.issuer.verify(set.access_token, shape)).user, 'admin')
  })
})
