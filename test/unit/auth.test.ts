/**
 * Authentication building blocks (SPEC §5, W5–W12): the JWT-shape rule, API-key verification,
 * the authentication router, credential extraction, and the duration/size grammar.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import { ApiKeyVerifier } from '../../src/auth/apikey.ts'
import { Authenticator, type AuthenticatorOptions, type JwtVerifier } from '../../src/auth/authenticate.ts'
import { bearerToken, extractCredential, type ExtractOptions } from '../../src/auth/extract.ts'
import { jwtShape } from '../../src/auth/jwtShape.ts'
import type { Principal } from '../../src/http/principal.ts'
import { parseDuration, parseSize } from '../../src/config/units.ts'

const JWT_IO =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
const jwt = (header: unknown, payload: unknown, sig = 'c2ln'): string => `${b64(header)}.${b64(payload)}.${sig}`
const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`

/** Assert that `f` throws (synchronously or by rejecting) a GatehouseError with `code`. */
async function rejectsWith(f: () => unknown, code: string, status?: number): Promise<Error> {
  let caught: unknown
  try {
    await f()
  } catch (e) {
    caught = e
  }
  assert.ok(caught !== undefined, `expected ${code}, but nothing was thrown`)
  const err = caught as Error & { code?: string; status?: number }
  assert.equal(err.code, code)
  if (status !== undefined) assert.equal(err.status, status)
  return err
}

describe('jwtShape (W8, SPEC §5)', () => {
  it("Weaviate's vectors: \"does not matter\" and \"\" are not JWTs", () => {
    assert.equal(jwtShape('does not matter'), undefined)
    assert.equal(jwtShape(''), undefined)
  })
  it("Weaviate's vector: the jwt.io sample is a JWT, with its header and payload decoded", () => {
    const s = jwtShape(JWT_IO)
    assert.ok(s !== undefined)
    assert.deepEqual(s.header, { alg: 'HS256', typ: 'JWT' })
    assert.deepEqual(s.payload, { sub: '1234567890', name: 'John Doe', iat: 1516239022 })
  })
  it('a JWT with an unknown alg, expired exp or bad signature is still JWT-shaped', () => {
    assert.ok(jwtShape(jwt({ alg: 'XYZ' }, { exp: 1 }, 'not-a-real-signature')) !== undefined)
    assert.ok(jwtShape(jwt({ alg: 'none' }, {}, '')) !== undefined)
  })
  it('not exactly three parts: not a JWT', () => {
    assert.equal(jwtShape(`${b64({ alg: 'RS256' })}.${b64({})}`), undefined)
    assert.equal(jwtShape(`${jwt({ alg: 'RS256' }, {})}.extra`), undefined)
    assert.equal(jwtShape(`${b64({})}.${b64({})}.${b64({})}.${b64({})}`), undefined)
    assert.equal(jwtShape('..'), undefined)
    assert.equal(jwtShape('a.b'), undefined)
  })
  it('header or payload not JSON: not a JWT', () => {
    assert.equal(jwtShape('a.b.c'), undefined)
    assert.equal(jwtShape(`${b64('not json')}.${b64({})}.sig`), undefined)
    assert.equal(jwtShape(`${b64({ alg: 'RS256' })}.${b64('{"sub":')}.sig`), undefined)
  })
  it('header or payload JSON but not an object (array, string, number, null): not a JWT', () => {
    assert.equal(jwtShape(jwt({ alg: 'RS256' }, [1, 2])), undefined)
    assert.equal(jwtShape(jwt(['RS256'], {})), undefined)
    assert.equal(jwtShape(jwt({ alg: 'RS256' }, '"sub"')), undefined)
    assert.equal(jwtShape(jwt({ alg: 'RS256' }, '42')), undefined)
    assert.equal(jwtShape(jwt({ alg: 'RS256' }, 'null')), undefined)
  })
  it('characters outside base64url: not a JWT', () => {
    const h = Buffer.from(JSON.stringify({ alg: 'RS256', x: '>>>' })).toString('base64')
    assert.ok(/[+/=]/.test(h), 'the test header must contain standard-base64 characters')
    assert.equal(jwtShape(`${h}.${b64({})}.sig`), undefined)
    assert.equal(jwtShape(`${b64({ alg: 'RS256' })}.${b64({})}.si+g`), undefined)
    assert.equal(jwtShape(`${b64({ alg: 'RS256' })}.${b64({})}.sig=`), undefined)
  })
  it('generated API keys (gh_…) never look like JWTs', () => {
    assert.equal(jwtShape('gh_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), undefined)
  })
})

describe('ApiKeyVerifier (W6)', () => {
  it('plaintext keys, one user per key: key n → user n', () => {
    const v = new ApiKeyVerifier(['k-one', 'k-two', 'k-three'], ['u1', 'u2', 'u3'])
    assert.equal(v.size, 3)
    assert.equal(v.authenticate('k-one')?.user, 'u1')
    assert.equal(v.authenticate('k-two')?.user, 'u2')
    assert.equal(v.authenticate('k-three')?.user, 'u3')
  })
  it('a single user for all keys', () => {
    const v = new ApiKeyVerifier(['k-one', 'k-two', 'k-three'], ['only'])
    for (const k of ['k-one', 'k-two', 'k-three']) assert.equal(v.authenticate(k)?.user, 'only')
  })
  it('sha256: forms match the plaintext key, and lower or upper case hex both work', () => {
    const v = new ApiKeyVerifier([sha256('secret-a'), sha256('secret-b').toUpperCase().replace('SHA256:', 'sha256:')], ['a', 'b'])
    assert.equal(v.authenticate('secret-a')?.user, 'a')
    assert.equal(v.authenticate('secret-b')?.user, 'b')
  })
  it('presenting the sha256 form itself is not the key', () => {
    const v = new ApiKeyVerifier([sha256('secret-a')], ['a'])
    assert.equal(v.authenticate(sha256('secret-a')), undefined)
    assert.equal(v.authenticate(sha256('secret-a').slice(7)), undefined)
  })
  it('plaintext and sha256 forms can be mixed', () => {
    const v = new ApiKeyVerifier(['plain-key', sha256('hashed-key')], ['p', 'h'])
    assert.equal(v.authenticate('plain-key')?.user, 'p')
    assert.equal(v.authenticate('hashed-key')?.user, 'h')
  })
  it('an unknown key, a prefix, a key with extra whitespace or different case: undefined', () => {
    const v = new ApiKeyVerifier(['jane-secret-key'], ['jane'])
    for (const k of ['nope', '', 'jane-secret', 'jane-secret-key ', ' jane-secret-key', 'JANE-SECRET-KEY', 'jane-secret-keyx']) {
      assert.equal(v.authenticate(k), undefined, JSON.stringify(k))
    }
  })
  it('the principal is { user, groups: [], method: "apikey" }', () => {
    const p = new ApiKeyVerifier(['k'], ['jane@doe.com']).authenticate('k')
    assert.ok(p !== undefined)
    assert.equal(p.user, 'jane@doe.com')
    assert.deepEqual([...p.groups], [])
    assert.equal(p.method, 'apikey')
  })
  it('duplicate users are allowed (W5)', () => {
    const v = new ApiKeyVerifier(['a', 'b'], ['same', 'same'])
    assert.equal(v.authenticate('a')?.user, 'same')
    assert.equal(v.authenticate('b')?.user, 'same')
  })
})

describe('Authenticator (SPEC §5, W8, W10, W12)', () => {
  const keys = new ApiKeyVerifier(['jane-key', 'ian-key'], ['jane', 'ian'])
  const OIDC_ISS = 'https://idp.example.com/realms/main'
  const oidcPrincipal: Principal = { user: 'oidc-user', groups: ['g'], method: 'oidc' }
  const calls: string[] = []
  const oidc: JwtVerifier = {
    verify(token) {
      calls.push(token)
      return Promise.resolve(oidcPrincipal)
    },
  }
  const make = (o: Partial<AuthenticatorOptions>): Authenticator =>
    new Authenticator({ anonymousEnabled: false, apiKeys: undefined, jwtVerifiers: new Map(), methodNames: [], ...o })
  const apikeyOnly = (anonymousEnabled = false): Authenticator => make({ anonymousEnabled, apiKeys: keys, methodNames: ['API-keys'] })
  const both = (): Authenticator => make({ apiKeys: keys, jwtVerifiers: new Map([[OIDC_ISS, oidc]]), methodNames: ['API-keys', 'OIDC'] })

  it('no credential, anonymous off: 401 ERR_UNAUTHENTICATED with the exact message listing methods', async () => {
    const e = await rejectsWith(() => both().authenticate(undefined, 'read'), 'ERR_UNAUTHENTICATED', 401)
    assert.equal(e.message, 'anonymous access not enabled. Please authenticate through one of the available methods: [API-keys, OIDC]')
    const e2 = await rejectsWith(() => apikeyOnly().authenticate(undefined, 'write'), 'ERR_UNAUTHENTICATED', 401)
    assert.equal(e2.message, 'anonymous access not enabled. Please authenticate through one of the available methods: [API-keys]')
    const e3 = await rejectsWith(() => make({ jwtVerifiers: new Map([[OIDC_ISS, oidc]]), methodNames: ['OIDC'] }).authenticate(undefined, 'read'), 'ERR_UNAUTHENTICATED')
    assert.equal(e3.message, 'anonymous access not enabled. Please authenticate through one of the available methods: [OIDC]')
  })
  it('no credential, anonymous off, "authenticated" access (GET /v1/meta): still 401', async () => {
    await rejectsWith(() => apikeyOnly().authenticate(undefined, 'authenticated'), 'ERR_UNAUTHENTICATED', 401)
  })
  it('no credential on a public path admits anonymous even with anonymous off', async () => {
    const r = await apikeyOnly().authenticate(undefined, 'public')
    assert.equal(r.authenticator, 'anonymous')
    assert.equal(r.principal.user, 'anonymous')
    assert.equal(r.principal.method, 'anonymous')
  })
  it('no credential, anonymous on: the anonymous principal', async () => {
    const r = await apikeyOnly(true).authenticate(undefined, 'write')
    assert.equal(r.authenticator, 'anonymous')
    assert.equal(r.principal.user, 'anonymous')
  })
  it('a valid API key: the key’s user', async () => {
    const r = await apikeyOnly().authenticate({ token: 'ian-key', source: 'authorization' }, 'read')
    assert.equal(r.authenticator, 'apikey')
    assert.equal(r.principal.user, 'ian')
    assert.equal(r.principal.method, 'apikey')
  })
  it('an invalid key is 401 ERR_INVALID_API_KEY, even with anonymous access on (never downgraded)', async () => {
    const e = await rejectsWith(() => apikeyOnly(true).authenticate({ token: 'wrong', source: 'authorization' }, 'read'), 'ERR_INVALID_API_KEY', 401)
    assert.equal(e.message, 'unauthorized: invalid api key')
    await rejectsWith(() => apikeyOnly(false).authenticate({ token: 'wrong', source: 'authorization' }, 'read'), 'ERR_INVALID_API_KEY', 401)
  })
  it('an invalid key on a public path is still 401', async () => {
    await rejectsWith(() => apikeyOnly(true).authenticate({ token: 'wrong', source: 'authorization' }, 'public'), 'ERR_INVALID_API_KEY', 401)
  })
  it('a JWT-shaped token with an unknown iss: 401 ERR_UNKNOWN_ISSUER (not tried as an API key)', async () => {
    await rejectsWith(() => both().authenticate({ token: jwt({ alg: 'RS256' }, { iss: 'https://evil.example' }), source: 'authorization' }, 'read'), 'ERR_UNKNOWN_ISSUER', 401)
    await rejectsWith(() => both().authenticate({ token: JWT_IO, source: 'authorization' }, 'read'), 'ERR_UNKNOWN_ISSUER', 401)
    await rejectsWith(() => apikeyOnly(true).authenticate({ token: JWT_IO, source: 'authorization' }, 'read'), 'ERR_UNKNOWN_ISSUER', 401)
  })
  it('the iss must match exactly (no trailing-slash or case leniency)', async () => {
    for (const iss of [`${OIDC_ISS}/`, OIDC_ISS.toUpperCase(), `${OIDC_ISS} `]) {
      await rejectsWith(() => both().authenticate({ token: jwt({ alg: 'RS256' }, { iss }), source: 'authorization' }, 'read'), 'ERR_UNKNOWN_ISSUER')
    }
    await rejectsWith(() => both().authenticate({ token: jwt({ alg: 'RS256' }, { iss: [OIDC_ISS] }), source: 'authorization' }, 'read'), 'ERR_UNKNOWN_ISSUER')
  })
  it('a JWT with a known iss goes to that issuer’s verifier', async () => {
    calls.length = 0
    const token = jwt({ alg: 'RS256' }, { iss: OIDC_ISS, sub: 'x' })
    const r = await both().authenticate({ token, source: 'authorization' }, 'read')
    assert.equal(r.authenticator, 'jwt')
    assert.equal(r.principal, oidcPrincipal)
    assert.deepEqual(calls, [token])
  })
  it('a verifier’s rejection is passed through (no fallback to API keys)', async () => {
    const failing: JwtVerifier = {
      verify: () => {
        throw Object.assign(new Error('bad sig'), { code: 'ERR_INVALID_TOKEN' })
      },
    }
    const a = make({ apiKeys: keys, jwtVerifiers: new Map([[OIDC_ISS, failing]]), methodNames: ['API-keys', 'OIDC'] })
    await rejectsWith(() => a.authenticate({ token: jwt({ alg: 'RS256' }, { iss: OIDC_ISS }), source: 'authorization' }, 'read'), 'ERR_INVALID_TOKEN')
  })
  it('a non-JWT token with only OIDC enabled is 401, not anonymous', async () => {
    const a = make({ anonymousEnabled: true, jwtVerifiers: new Map([[OIDC_ISS, oidc]]), methodNames: ['OIDC'] })
    const e = await rejectsWith(() => a.authenticate({ token: 'does not matter', source: 'authorization' }, 'read'), 'ERR_INVALID_TOKEN')
    assert.equal((e as Error & { status: number }).status, 401)
  })
  it('a token when no method is enabled: 401 ERR_NO_AUTH_SCHEME with Weaviate’s text', async () => {
    const a = make({ anonymousEnabled: true })
    const e = await rejectsWith(() => a.authenticate({ token: 'anything', source: 'authorization' }, 'read'), 'ERR_NO_AUTH_SCHEME', 401)
    assert.equal(
      e.message,
      "no authentication scheme is configured (API Key or OIDC), but an 'Authorization' header was provided. Please configure an auth scheme or remove the header for anonymous access",
    )
    await rejectsWith(() => a.authenticate({ token: JWT_IO, source: 'authorization' }, 'public'), 'ERR_NO_AUTH_SCHEME', 401)
  })
  it('anyMethod reflects the enabled methods', () => {
    assert.equal(make({}).anyMethod, false)
    assert.equal(apikeyOnly().anyMethod, true)
  })
})

/** A fake IncomingMessage: lower-cased `headers` (first value wins, as in Node) and `rawHeaders`. */
function fakeReq(raw: [string, string][]): IncomingMessage {
  const headers: Record<string, string> = {}
  const rawHeaders: string[] = []
  for (const [k, v] of raw) {
    headers[k.toLowerCase()] ??= v
    rawHeaders.push(k, v)
  }
  return { headers, rawHeaders } as unknown as IncomingMessage
}

describe('extractCredential (SPEC §5)', () => {
  const plain: ExtractOptions = { apiKeyHeader: false, queryToken: false }
  const qdrant: ExtractOptions = { apiKeyHeader: true, queryToken: false }
  const withQuery: ExtractOptions = { apiKeyHeader: false, queryToken: true }

  it('no credential: undefined, query unchanged', () => {
    assert.deepEqual(extractCredential(fakeReq([]), 'a=1', plain), { credential: undefined, query: 'a=1' })
  })
  it('Authorization: Bearer <token>', () => {
    const r = extractCredential(fakeReq([['Authorization', 'Bearer jane-key']]), '', plain)
    assert.deepEqual(r.credential, { token: 'jane-key', source: 'authorization' })
  })
  it('bearerToken reads the token exactly as /^bearer +(.*)$/i plus trim would (without a regex over the token)', () => {
    const reference = (a: string): string | undefined => {
      const m = /^bearer +(.*)$/i.exec(a)
      return m === null ? undefined : (m[1] ?? '').trim()
    }
    for (const a of ['Bearer abc', 'bearer  abc', 'BEARER abc ', 'Bearer', 'Bearer ', 'Bearer  ', 'Bearerabc', 'Basic abc', 'Bearer\tabc', 'Bearer a b', 'Bearer abc\t', 'xBearer abc', 'Bearer \tabc', 'Bearer é', 'bEaReR x.y.z']) {
      assert.equal(bearerToken(a), reference(a), JSON.stringify(a))
    }
  })

  it('the scheme is case-insensitive: lower-case bearer is accepted', () => {
    assert.equal(extractCredential(fakeReq([['authorization', 'bearer jane-key']]), '', plain).credential?.token, 'jane-key')
    assert.equal(extractCredential(fakeReq([['authorization', 'BEARER jane-key']]), '', plain).credential?.token, 'jane-key')
  })
  it('Basic (or any other scheme) is 401 ERR_INVALID_TOKEN, never anonymous', async () => {
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Basic amFuZTpwdw==']]), '', plain), 'ERR_INVALID_TOKEN', 401)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Token abc']]), '', plain), 'ERR_INVALID_TOKEN', 401)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearerabc']]), '', plain), 'ERR_INVALID_TOKEN', 401)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'abc']]), '', plain), 'ERR_INVALID_TOKEN', 401)
  })
  it('an empty bearer token is 401 ERR_INVALID_TOKEN', async () => {
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer ']]), '', plain), 'ERR_INVALID_TOKEN', 401)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer    ']]), '', plain), 'ERR_INVALID_TOKEN', 401)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer']]), '', plain), 'ERR_INVALID_TOKEN', 401)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', '']]), '', plain), 'ERR_INVALID_TOKEN', 401)
  })
  it('two Authorization headers: 400 ERR_AMBIGUOUS_CREDENTIAL (even when equal)', async () => {
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer a'], ['authorization', 'Bearer b']]), '', plain), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer a'], ['AUTHORIZATION', 'Bearer a']]), '', plain), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
  })
  it('qdrant profile: the api-key header is a credential', () => {
    const r = extractCredential(fakeReq([['api-key', 'qkey']]), '', qdrant)
    assert.deepEqual(r.credential, { token: 'qkey', source: 'api-key' })
  })
  it('other profiles: the api-key header is ignored', () => {
    assert.equal(extractCredential(fakeReq([['api-key', 'qkey']]), '', plain).credential, undefined)
  })
  it('qdrant: the same token in Authorization and api-key is fine; different ones are ambiguous', async () => {
    assert.equal(extractCredential(fakeReq([['Authorization', 'Bearer same'], ['api-key', 'same']]), '', qdrant).credential?.token, 'same')
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer one'], ['api-key', 'two']]), '', qdrant), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
  })
  it('qdrant: two api-key headers are ambiguous; an empty one is 401', async () => {
    await rejectsWith(() => extractCredential(fakeReq([['api-key', 'a'], ['Api-Key', 'b']]), '', qdrant), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
    await rejectsWith(() => extractCredential(fakeReq([['api-key', '']]), '', qdrant), 'ERR_INVALID_TOKEN', 401)
  })
  it('the query token is not a credential unless enabled', () => {
    assert.equal(extractCredential(fakeReq([]), 'access_token=qt&a=1', plain).credential, undefined)
    // not ambiguous either: it is simply not looked at
    assert.equal(extractCredential(fakeReq([['Authorization', 'Bearer one']]), 'access_token=two', plain).credential?.token, 'one')
  })
  it('enabled: the query token is taken and removed from the forwarded query', () => {
    const r = extractCredential(fakeReq([]), 'a=1&access_token=qt&b=2', withQuery)
    assert.deepEqual(r.credential, { token: 'qt', source: 'query' })
    assert.equal(r.query, 'a=1&b=2')
  })
  it('enabled: two access_token parameters are ambiguous; an empty one is 401', async () => {
    await rejectsWith(() => extractCredential(fakeReq([]), 'access_token=a&access_token=b', withQuery), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
    await rejectsWith(() => extractCredential(fakeReq([]), 'access_token=a&access_token=a', withQuery), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
    await rejectsWith(() => extractCredential(fakeReq([]), 'access_token=', withQuery), 'ERR_INVALID_TOKEN', 401)
  })
  it('different tokens in the header and the query: ambiguous', async () => {
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', 'Bearer one']]), 'access_token=two', withQuery), 'ERR_AMBIGUOUS_CREDENTIAL', 400)
  })
  it('the same token in the header and the query is accepted once, and removed from the query', () => {
    const r = extractCredential(fakeReq([['Authorization', 'Bearer same']]), 'access_token=same&x=1', withQuery)
    assert.deepEqual(r.credential, { token: 'same', source: 'authorization' })
    assert.equal(r.query, 'x=1')
  })
  it('a huge token is refused before parsing', async () => {
    await rejectsWith(() => extractCredential(fakeReq([['Authorization', `Bearer ${'a'.repeat(64 * 1024)}`]]), '', plain), 'ERR_INVALID_TOKEN', 401)
  })
})

describe('parseDuration (Weka grammar, SPEC §2)', () => {
  const S = 1000
  const good: [string, number][] = [
    ['30s', 30 * S],
    ['4m', 240 * S],
    ['2h', 7200 * S],
    ['1d', 86_400 * S],
    ['1d5h', (86_400 + 5 * 3600) * S],
    ['1w', 604_800 * S],
    ['1m30s', 90 * S],
    ['0s', 0],
    ['500ms', 500],
    ['1w2d3h4m5s', (604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5) * S],
  ]
  for (const [text, ms] of good) it(`${text} = ${ms} ms`, () => assert.equal(parseDuration(text), ms))
  it('infinite and unlimited are Infinity', () => {
    assert.equal(parseDuration('infinite'), Infinity)
    assert.equal(parseDuration('unlimited'), Infinity)
  })
  for (const text of ['', ' ', '30', 's', 'abc', '1x', '-1s', '1.5h', '5h1d', '1h1h', '1d 5h', 'infinity', 'forever', '1s5m']) {
    it(`${JSON.stringify(text)} is not a duration`, () => assert.equal(parseDuration(text), undefined))
  }
})

describe('parseSize', () => {
  const good: [unknown, number][] = [
    [0, 0],
    [1024, 1024],
    ['0', 0],
    ['1234', 1234],
    ['512KiB', 512 * 1024],
    ['10MiB', 10 * 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['1kb', 1000],
    ['2MB', 2e6],
    ['1GB', 1e9],
    ['100B', 100],
  ]
  for (const [input, n] of good) it(`${JSON.stringify(input)} = ${n}`, () => assert.equal(parseSize(input), n))
  for (const input of ['', 'abc', '-1', '1.5MB', '10XB', '1TB', -1, 1.5, null, undefined, true, ['1']]) {
    it(`${JSON.stringify(input)} is not a size`, () => assert.equal(parseSize(input), undefined))
  }
})
