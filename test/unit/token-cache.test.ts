import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Authenticator, type JwtVerifier } from '../../src/auth/authenticate.ts'
import type { Principal } from '../../src/http/principal.ts'
import { TokenCache } from '../../src/auth/tokenCache.ts'

const p = (user: string): Principal => ({ user, groups: [], method: 'oidc' })

describe('TokenCache (clock mocked)', () => {
  it('never serves an entry past the token exp, nor past maxTtl', () => {
    let t = 1_000_000_000_000
    const c = new TokenCache({ maxEntries: 10, maxTtlMs: 60_000, now: () => t })
    c.set('a', p('a'), t / 1000 + 30) // exp in 30 s
    c.set('b', p('b'), t / 1000 + 3600) // exp in 1 h, maxTtl 60 s
    assert.equal(c.get('a')?.user, 'a')
    t += 30_000
    assert.equal(c.get('a'), undefined, 'expired with the token')
    assert.equal(c.get('b')?.user, 'b')
    t += 30_001
    assert.equal(c.get('b'), undefined, 'expired with maxTtl')
  })
  it('does not cache tokens without exp or already expired', () => {
    const t = 1_000_000_000_000
    const c = new TokenCache({ maxEntries: 10, maxTtlMs: 60_000, now: () => t })
    c.set('x', p('x'), undefined)
    c.set('y', p('y'), t / 1000 - 1)
    assert.equal(c.size, 0)
  })
  it('is bounded (LRU) and can be revoked by predicate, by a per-entry revalidation, or cleared', () => {
    const t = 1_000_000_000_000
    const c = new TokenCache({ maxEntries: 3, maxTtlMs: 60_000, now: () => t })
    let cValid = true
    for (const u of ['a', 'b', 'c', 'd']) c.set(u, p(u), t / 1000 + 60, u === 'c' ? () => cValid : undefined)
    assert.equal(c.size, 3)
    assert.equal(c.get('a'), undefined)
    c.revoke((x) => x.user === 'b')
    assert.equal(c.get('b'), undefined)
    assert.equal(c.get('c')?.user, 'c')
    cValid = false
    assert.equal(c.get('c'), undefined, 'the revalidation runs on every hit')
    assert.equal(c.get('d')?.user, 'd')
    c.clear()
    assert.equal(c.size, 0)
  })
})

describe('Authenticator with the token cache', () => {
  it('a repeated JWT is verified once; a different token is verified again', async () => {
    let calls = 0
    const verifier: JwtVerifier = {
      verify: (_t, shape) => {
        calls++
        return p(String(shape.payload.sub))
      },
    }
    const jwt = (sub: string): string => `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'https://i', sub, exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.sig`
    const a = new Authenticator({ anonymousEnabled: false, apiKeys: undefined, jwtVerifiers: new Map([['https://i', verifier]]), methodNames: ['OIDC'], tokenCache: new TokenCache({ maxEntries: 100, maxTtlMs: 60_000 }) })
    const t1 = jwt('one')
    for (let i = 0; i < 5; i++) assert.equal((await a.authenticate({ token: t1, source: 'authorization' }, 'read')).principal.user, 'one')
    assert.equal(calls, 1)
    await a.authenticate({ token: jwt('two'), source: 'authorization' }, 'read')
    assert.equal(calls, 2)
  })
  it('a failed verification is not cached', async () => {
    let calls = 0
    const verifier: JwtVerifier = {
      verify: () => {
        calls++
        throw new Error('bad')
      },
    }
    const tok = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'https://i', exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.sig`
    const a = new Authenticator({ anonymousEnabled: false, apiKeys: undefined, jwtVerifiers: new Map([['https://i', verifier]]), methodNames: ['OIDC'], tokenCache: new TokenCache({ maxEntries: 100, maxTtlMs: 60_000 }) })
    for (let i = 0; i < 3; i++) await assert.rejects(async () => a.authenticate({ token: tok, source: 'authorization' }, 'read'))
    assert.equal(calls, 3)
  })
})
