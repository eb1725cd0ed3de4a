/**
 * The JWKS cache as a unit, against a real test issuer, with the clock mocked (the only mock).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { issuerDispatcher } from '../../src/auth/oidc/fetch.ts'
import { JwksCache } from '../../src/auth/oidc/jwksCache.ts'
import { createLogger } from '../../src/log.ts'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'

const H = 3_600_000

describe('JwksCache', () => {
  let issuer: TestIssuer
  let dir: string
  let t: number
  const clock = (): number => t

  before(async () => {
    issuer = await startIssuer()
    dir = mkdtempSync(path.join(tmpdir(), 'gh-jwks-'))
  })
  after(async () => {
    await issuer.close()
    rmSync(dir, { recursive: true, force: true })
  })

  function cache(stateDir = dir): JwksCache {
    return new JwksCache({
      issuer: issuer.url,
      jwksUrl: '',
      dispatcher: issuerDispatcher(undefined, 1000),
      limits: { timeoutMs: 1000, maxBytes: 64 * 1024 },
      cooldownMs: 30_000,
      refreshMs: 10 * 60_000,
      staleIfErrorMs: 24 * H,
      stateDir,
      logger: createLogger('silent'),
      now: clock,
    })
  }

  it('an unknown kid refetches at most once per cooldown, and concurrent misses share one fetch', async () => {
    t = 1_000_000
    const c = cache(mkdtempSync(path.join(tmpdir(), 'gh-jwks-a-')))
    await c.refresh()
    issuer.resetHits()
    t += 31_000
    const misses = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => c.getKey(`nope-${i}`, 'RS256')))
    assert.ok(misses.every((m) => m.status === 'rejected' && (m.reason as { code: string }).code === 'ERR_INVALID_TOKEN'))
    assert.equal(issuer.hits.jwks, 1, 'one shared refetch')
    t += 10_000
    await assert.rejects(c.getKey('still-nope', 'RS256'))
    assert.equal(issuer.hits.jwks, 1, 'no refetch inside the cooldown')
    t += 21_000
    await assert.rejects(c.getKey('again-nope', 'RS256'))
    assert.equal(issuer.hits.jwks, 2, 'one refetch after the cooldown')
    c.stop()
  })

  it('a known kid is served from the cache without any fetch', async () => {
    t = 2_000_000
    const c = cache(mkdtempSync(path.join(tmpdir(), 'gh-jwks-b-')))
    await c.refresh()
    issuer.resetHits()
    for (let i = 0; i < 50; i++) await c.getKey(issuer.keys.signingKid, 'RS256')
    assert.equal(issuer.hits.jwks + issuer.hits.discovery, 0)
    c.stop()
  })

  it('stale-if-error: the last good keys work for 24 h after the last success while the issuer is down, then 503', async () => {
    t = 3_000_000
    const c = cache(mkdtempSync(path.join(tmpdir(), 'gh-jwks-c-')))
    await c.refresh()
    await issuer.stop()
    try {
      t += 23 * H
      await c.refresh() // fails; the keys stay
      assert.ok(await c.getKey(issuer.keys.signingKid, 'RS256'))
      assert.equal(c.ready, true)
      t += 1 * H + 1000
      await assert.rejects(c.getKey(issuer.keys.signingKid, 'RS256'), (e: { code: string; headers: Record<string, string> }) => e.code === 'ERR_IDP_UNAVAILABLE' && /^\d+$/.test(e.headers['retry-after'] ?? ''))
      assert.equal(c.ready, false)
      assert.match(c.status().lastError ?? '', /127\.0\.0\.1/)
    } finally {
      c.stop()
      await issuer.start()
    }
  })

  it('persists the last good documents atomically (0600) and loads them at start while the issuer is down', async () => {
    t = 4_000_000
    const sd = mkdtempSync(path.join(tmpdir(), 'gh-jwks-d-'))
    const a = cache(sd)
    await a.refresh()
    a.stop()
    const file = a.persistFile as string
    assert.equal(statSync(file).mode & 0o777, 0o600)
    await issuer.stop()
    try {
      const b = cache(sd)
      b.start()
      assert.equal(b.ready, true, 'ready from disk before any fetch')
      assert.ok(await b.getKey(issuer.keys.signingKid, 'RS256'))
      b.stop()
    } finally {
      await issuer.start()
    }
  })

  it('refuses a discovery document whose issuer differs, and a key type that does not fit the alg', async () => {
    t = 5_000_000
    const c = cache(mkdtempSync(path.join(tmpdir(), 'gh-jwks-e-')))
    issuer.discoveryOverrides = { issuer: `${issuer.url}/` }
    try {
      await c.refresh()
      assert.equal(c.ready, false)
      assert.match(c.status().lastError ?? '', /does not equal/)
    } finally {
      issuer.discoveryOverrides = {}
    }
    t += 31_000
    await c.refresh()
    await assert.rejects(c.getKey(issuer.keys.signingKid, 'ES256'), (e: { code: string }) => e.code === 'ERR_INVALID_TOKEN')
    c.stop()
  })
})
