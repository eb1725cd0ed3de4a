/**
 * The ID token of a browser sign-in passes the bearer verifier's rules and OIDC Core §3.1.3.7's:
 * `aud` contains the client id even when bearer tokens skip that check, `azp` (when present) is
 * the client id, and `nonce` is the flow's. The verifier is the real one, with keys loaded the
 * way a restart during an issuer outage loads them (the persisted JWKS in the state directory);
 * only the clock is fixed.
 */
import assert from 'node:assert/strict'
import { createHash, generateKeyPairSync } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { importJWK, SignJWT, type JWTPayload } from 'jose'
import { Agent } from 'undici'
import { JwksCache } from '../../src/auth/oidc/jwksCache.ts'
import { OidcVerifier } from '../../src/auth/oidc/verifier.ts'
import { jwtShape, type JwtShape } from '../../src/auth/jwtShape.ts'
import { BrowserLogin } from '../../src/browser/login.ts'
import { ProviderClient } from '../../src/browser/provider.ts'
import { createLogger } from '../../src/log.ts'

const ISSUER = 'https://login.example.test/realms/main'
const CLIENT = 'gatehouse'
const NOW = 1_800_000_000_000

const dir = mkdtempSync(path.join(tmpdir(), 'gh-idtoken-'))
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const pub = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }
mkdirSync(path.join(dir, 'oidc'), { recursive: true })
writeFileSync(path.join(dir, 'oidc', `${createHash('sha256').update(ISSUER).digest('hex').slice(0, 16)}.json`), JSON.stringify({ version: 1, issuer: ISSUER, jwks: [pub], advertisedAlgs: ['RS256'], jwksUri: `${ISSUER}/certs`, fetchedAt: NOW }))
const logger = createLogger('fatal', new Writable({ write: (_c, _e, cb) => cb() }))
const dispatcher = new Agent()
const caches: JwksCache[] = []
let lastVerifier: OidcVerifier | undefined

function login(skipClientIdCheck: boolean): BrowserLogin {
  const cache = new JwksCache({ issuer: ISSUER, jwksUrl: '', dispatcher, limits: { timeoutMs: 100, maxBytes: 65536 }, cooldownMs: 60_000, refreshMs: 3_600_000, staleIfErrorMs: 86_400_000, stateDir: dir, logger, now: () => NOW })
  // The persisted keys; the background fetch it also starts fails at once (no such host here)
  // and leaves them in use, as during an outage.
  cache.start()
  caches.push(cache)
  const verifier = new OidcVerifier({ issuer: ISSUER, clientId: CLIENT, skipClientIdCheck, usernameClaim: 'preferred_username', groupsClaim: 'groups', algorithms: [], clockToleranceMs: 60_000, maxTokenBytes: 16_384, cache, now: () => NOW })
  lastVerifier = verifier
  return new BrowserLogin({
    oidc: { issuer: ISSUER, clientId: CLIENT, scopes: ['openid'], verifier, provider: new ProviderClient({ issuer: ISSUER, clientId: CLIENT, clientSecret: undefined, http: () => verifier.http }) },
    localUsers: false,
    redirectUrl: undefined,
    cookieName: '__Host-gatehouse-session',
    idleTimeoutMs: 3_600_000,
    lifetimeMs: 43_200_000,
    proto: 'https',
  }, () => NOW)
}

async function idToken(claims: JWTPayload): Promise<string> {
  const key = await importJWK({ ...privateKey.export({ format: 'jwk' }), alg: 'RS256' }, 'RS256')
  return new SignJWT({ iss: ISSUER, aud: CLIENT, sub: 's1', preferred_username: 'alice', groups: ['g1'], nonce: 'n-1', iat: NOW / 1000, exp: NOW / 1000 + 300, ...claims }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(key)
}

describe('verifyIdToken', () => {
  after(async () => {
    for (const c of caches) c.stop()
    await dispatcher.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('accepts the right token and gives the principal and the expiry', async () => {
    const r = await login(false).verifyIdToken(await idToken({}), 'n-1')
    assert.equal(r.principal.user, 'alice')
    assert.deepEqual(r.principal.groups, ['g1'])
    assert.equal(r.principal.method, 'oidc')
    assert.equal(r.expiresAt, NOW + 300_000)
  })

  const refused: [string, JWTPayload, string | undefined][] = [
    ['a wrong nonce', { nonce: 'n-2' }, 'n-1'],
    ['no nonce', { nonce: undefined }, 'n-1'],
    ['another client’s token', { aud: 'other' }, 'n-1'],
    ['several audiences with another azp', { aud: [CLIENT, 'other'], azp: 'other' }, 'n-1'],
    ['one audience with another azp', { azp: 'other' }, 'n-1'],
    ['another issuer', { iss: 'https://evil.example.test' }, 'n-1'],
    ['an expired token', { exp: NOW / 1000 - 3600 }, 'n-1'],
    ['no user name claim', { preferred_username: undefined }, 'n-1'],
  ]
  for (const [what, claims, nonce] of refused) {
    it(`refuses ${what}`, async () => {
      await assert.rejects(login(false).verifyIdToken(await idToken(claims), nonce), (e: { code?: string }) => typeof e.code === 'string' && e.code.startsWith('ERR_'))
    })
  }

  it('checks aud even when bearer tokens skip the client id check', async () => {
    const l = login(true)
    const token = await idToken({ aud: 'other' })
    await assert.rejects(l.verifyIdToken(token, 'n-1'), (e: { code?: string; detail?: string }) => e.code === 'ERR_INVALID_TOKEN' && /aud/.test(e.detail ?? ''))
    // …which that issuer's bearer verifier alone lets through.
    assert.equal((await (lastVerifier as OidcVerifier).verify(token, jwtShape(token) as JwtShape)).user, 'alice')
  })

  it('a refreshed ID token carries no nonce to compare (OIDC Core §12.2)', async () => {
    const r = await login(false).verifyIdToken(await idToken({ nonce: undefined }), undefined)
    assert.equal(r.principal.user, 'alice')
  })

  it('refuses an ID token signed by another key', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    const forged = await new SignJWT({ iss: ISSUER, aud: CLIENT, preferred_username: 'alice', nonce: 'n-1', exp: NOW / 1000 + 300 }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(await importJWK({ ...other.export({ format: 'jwk' }), alg: 'RS256' }, 'RS256'))
    await assert.rejects(login(false).verifyIdToken(forged, 'n-1'), (e: { code?: string }) => e.code === 'ERR_INVALID_TOKEN')
  })
})
