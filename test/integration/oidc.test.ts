/**
 * OIDC bearer JWTs through a real gatehouse, a real test issuer (keys, discovery, JWKS, fault
 * switches) and a real recording upstream. Every rejected token is checked for 401 AND for the
 * upstream having received nothing.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { oidcEnv as issuerEnv, startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, waitReady, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const now = (): number => Math.floor(Date.now() / 1000)

function oidcEnv(issuer: TestIssuer, up: RecordingUpstream, extra: Record<string, string> = {}): Record<string, string> {
  return issuerEnv(issuer, up, {
    GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
    AUTHENTICATION_OIDC_GROUPS_CLAIM: 'groups',
    AUTHENTICATION_OIDC_SCOPES: 'openid,email',
    ...extra,
  })
}

// Short cooldown so rotation is observable without waiting 30 s.
const FAST_JWKS = `authentication:\n  oidc:\n    maxTokenBytes: 8KiB\n    jwks:\n      cooldown: 300ms\n      fetchTimeout: 1s\n`

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('OIDC: valid tokens and every classic attack', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let gh: TestProxy

  before(async () => {
    issuer = await startIssuer({ audience: 'gatehouse' })
    up = await startUpstream()
    gh = await startProxy({ env: oidcEnv(issuer, up), yaml: FAST_JWKS })
    await waitReady(gh)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('a valid token reaches the upstream with the user, groups and email', async () => {
    up.reset()
    const t = await issuer.sign({ email: 'ada@example.com', groups: ['admins', 'readers'] })
    const r = await gh.request('/v1/objects', { method: 'POST', token: t, body: '{}' })
    assert.equal(r.status, 200, r.text)
    const h = up.requests[0]?.headers
    assert.equal(h?.['x-forwarded-user'], 'ada@example.com')
    assert.equal(h?.['x-forwarded-groups'], 'admins,readers')
    assert.equal(h?.['x-forwarded-email'], 'ada@example.com')
    assert.equal(h?.['x-forwarded-auth-method'], 'oidc')
  })

  it('a single-string groups claim becomes one group', async () => {
    up.reset()
    const r = await gh.request('/v1/schema', { token: await issuer.sign({ email: 'b@example.com', groups: 'solo' }) })
    assert.equal(r.status, 200)
    assert.equal(up.requests[0]?.headers['x-forwarded-groups'], 'solo')
  })

  const attacks: [string, () => Promise<string>, string?][] = [
    ['wrong iss (unknown issuer)', () => issuer.sign({ email: 'a@x', iss: 'https://evil.example' }), 'ERR_UNKNOWN_ISSUER'],
    ['wrong aud', () => issuer.sign({ email: 'a@x', aud: 'someone-else' })],
    ['expired', () => issuer.sign({ email: 'a@x', iat: now() - 1000, exp: now() - 600 }), 'ERR_TOKEN_EXPIRED'],
    ['missing exp', () => issuer.sign({ email: 'a@x', exp: undefined })],
    ['nbf in the future beyond tolerance', () => issuer.sign({ email: 'a@x', nbf: now() + 600 })],
    ['iat in the future beyond tolerance', () => issuer.sign({ email: 'a@x', iat: now() + 600, exp: now() + 900 })],
    ['alg none', async () => issuer.attacks.unsignedAlgNone({ email: 'a@x' })],
    ['HS256 signed with the RSA public key (SPKI)', async () => issuer.attacks.hs256WithPublicKey({ email: 'a@x' }, 'spki')],
    ['HS256 signed with the RSA public key (JWK)', async () => issuer.attacks.hs256WithPublicKey({ email: 'a@x' }, 'jwk')],
    ['unknown kid signed by an unpublished key', () => issuer.attacks.signWithUnpublishedKey({ email: 'a@x' })],
    ['a published kid, signed by another key', () => issuer.attacks.signWithUnpublishedKey({ email: 'a@x' }, issuer.keys.signingKid)],
    ['embedded jwk + jku pointing at the attacker', () => issuer.attacks.withEmbeddedJwk({ email: 'a@x' })],
    ['corrupted signature', async () => issuer.attacks.corruptSignature(await issuer.sign({ email: 'a@x' }))],
    ['RSA key under 2048 bits (published)', () => issuer.attacks.weakRsa({ email: 'a@x' })],
    ['oversized token (validly signed, above maxTokenBytes)', () => issuer.attacks.oversized({ email: 'a@x' }, 10_000)],
    ['missing username claim', () => issuer.sign({ sub: 'no-email' }), 'ERR_MISSING_CLAIM'],
  ]
  for (const [name, make, reason] of attacks) {
    it(`${name} → 401 and the upstream sees nothing`, async () => {
      up.reset()
      const t = await make()
      const r = await gh.request('/v1/schema', { token: t })
      assert.equal(r.status, 401, r.text)
      if (reason !== undefined) assert.equal(r.json().reason, reason)
      assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/)
      assert.equal(up.requests.length, 0)
    })
  }

  it('a bad token stays 401 even with a valid-looking structure on a public path', async () => {
    up.reset()
    const r = await gh.request('/v1/.well-known/openid-configuration', { token: issuer.attacks.unsignedAlgNone({ email: 'a@x' }) })
    assert.equal(r.status, 401)
  })

  it('GET /v1/.well-known/openid-configuration tells clients where to log in, without a credential', async () => {
    const r = await gh.request('/v1/.well-known/openid-configuration')
    assert.equal(r.status, 200)
    assert.deepEqual(r.json(), { href: `${issuer.url}/.well-known/openid-configuration`, clientId: 'gatehouse', scopes: ['openid', 'email'] })
  })

  it('/readyz names the issuer as ready', async () => {
    const r = await gh.admin('/readyz')
    assert.equal(r.status, 200)
    assert.equal(r.json().checks.issuers[0].issuer, issuer.url)
    assert.equal(r.json().checks.issuers[0].ready, true)
  })
})

describe('OIDC: key rotation and unknown kids', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let gh: TestProxy

  before(async () => {
    issuer = await startIssuer()
    up = await startUpstream()
    gh = await startProxy({ env: oidcEnv(issuer, up), yaml: FAST_JWKS })
    await waitReady(gh)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('the issuer rotates: the first token with the new key succeeds after exactly one JWKS refetch', async () => {
    await new Promise((r) => setTimeout(r, 400)) // past the cooldown of the start-up fetch
    await issuer.keys.rotate('ES256')
    issuer.resetHits()
    const r = await gh.request('/v1/schema', { token: await issuer.sign({ email: 'rot@example.com' }) })
    assert.equal(r.status, 200, r.text)
    assert.equal(issuer.hits.jwks, 1)
  })

  it('100 requests with random unknown kids cause at most 2 JWKS fetches, all 401', async () => {
    // A proxy with a 3 s cooldown: after it, one shared refetch; then nothing until the cooldown ends.
    // The per-address throttle would answer most of these 429 before any key lookup; the cooldown
    // must bound the fetches on its own, so the throttle is off here.
    const gh3 = await startProxy({ env: oidcEnv(issuer, up), yaml: FAST_JWKS.replace('cooldown: 300ms', 'cooldown: 3s').replace('authentication:\n', 'authentication:\n  failureThrottle:\n    enabled: false\n') })
    try {
      await waitReady(gh3)
      await new Promise((r) => setTimeout(r, 3100))
      issuer.resetHits()
      up.reset()
      const tokens = await Promise.all(Array.from({ length: 100 }, (_, i) => issuer.attacks.signWithUnpublishedKey({ email: 'x@x' }, `random-${i}-${Math.random()}`)))
      const statuses: number[] = []
      for (let i = 0; i < tokens.length; i += 20) {
        const batch = await Promise.all(tokens.slice(i, i + 20).map((t) => gh3.request('/v1/schema', { token: t })))
        statuses.push(...batch.map((r) => r.status))
      }
      assert.deepEqual(new Set(statuses), new Set([401]))
      assert.ok(issuer.hits.jwks >= 1, 'an unknown kid triggers a refetch once the cooldown is over')
      assert.ok(issuer.hits.jwks <= 2, `JWKS fetched ${issuer.hits.jwks} times`)
      assert.equal(up.requests.length, 0)
    } finally {
      await gh3.stop()
      assertNoSecretsInLogs(gh3.logs)
    }
  })

  it('a removed key stops verifying new tokens after the next refetch', async () => {
    const old = issuer.keys.signingKid
    await issuer.keys.rotate('RS256')
    issuer.keys.removeKey(old)
    await new Promise((r) => setTimeout(r, 400))
    // A new-key token triggers the refetch, which drops the old key.
    assert.equal((await gh.request('/v1/schema', { token: await issuer.sign({ email: 'n@x' }) })).status, 200)
    const r = await gh.request('/v1/schema', { token: await issuer.sign({ email: 'o@x' }, { kid: old }) })
    assert.equal(r.status, 401)
  })
})

describe('OIDC: the issuer goes down', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let state: string

  before(async () => {
    issuer = await startIssuer()
    up = await startUpstream()
    state = mkdtempSync(path.join(tmpdir(), 'gh-oidc-state-'))
  })
  after(async () => {
    await up.close()
    await issuer.close()
    rmSync(state, { recursive: true, force: true })
  })

  it('after warm-up, fresh tokens keep working while the issuer is down; a restart during the outage still validates from persisted keys', async () => {
    const env = oidcEnv(issuer, up, { GATEHOUSE_STATE_DIR: state })
    const gh1 = await startProxy({ env, yaml: FAST_JWKS })
    await waitReady(gh1)
    assert.equal((await gh1.request('/v1/schema', { token: await issuer.sign({ email: 'w@x' }) })).status, 200)
    await issuer.stop()
    assert.equal((await gh1.request('/v1/schema', { token: await issuer.sign({ email: 'during@x' }) })).status, 200)
    await gh1.stop()
    assertNoSecretsInLogs(gh1.logs)

    const gh2 = await startProxy({ env, yaml: FAST_JWKS })
    try {
      const r = await gh2.request('/v1/schema', { token: await issuer.sign({ email: 'after-restart@x' }) })
      assert.equal(r.status, 200, r.text)
      assert.equal((await gh2.admin('/readyz')).status, 200)
    } finally {
      await gh2.stop()
      await issuer.start()
    }
  })

  it('issuer unreachable at start: API keys work, /readyz names the issuer, JWTs get 503 with Retry-After until the keys arrive', async () => {
    await issuer.stop()
    const fresh = mkdtempSync(path.join(tmpdir(), 'gh-oidc-fresh-'))
    usedSecrets.add('oidc-test-api-key')
    const gh = await startProxy({
      env: oidcEnv(issuer, up, {
        GATEHOUSE_STATE_DIR: fresh,
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: 'oidc-test-api-key',
        AUTHENTICATION_APIKEY_USERS: 'svc',
      }),
      yaml: FAST_JWKS,
    })
    try {
      up.reset()
      assert.equal((await gh.request('/v1/schema', { token: 'oidc-test-api-key' })).status, 200)
      const ready = await gh.admin('/readyz')
      assert.equal(ready.status, 503)
      assert.equal(ready.json().checks.issuers[0].issuer, issuer.url)
      assert.equal(ready.json().checks.issuers[0].ready, false)
      const jwt = await gh.request('/v1/schema', { token: await issuer.sign({ email: 'early@x' }) })
      assert.equal(jwt.status, 503)
      assert.equal(jwt.json().reason, 'ERR_IDP_UNAVAILABLE')
      assert.match(String(jwt.headers['retry-after']), /^\d+$/)
      assert.equal(up.requests.length, 1, 'only the API-key request reached the upstream')
      await issuer.start()
      // Retried with backoff (1 s, 2 s, …) or on the next request after the cooldown.
      await waitFor(async () => (await gh.request('/v1/schema', { token: await issuer.sign({ email: 'late@x' }) })).status === 200, 8000)
      assert.equal((await gh.admin('/readyz')).status, 200)
    } finally {
      await gh.stop()
      rmSync(fresh, { recursive: true, force: true })
      assertNoSecretsInLogs(gh.logs)
    }
  })

  for (const [fault, set] of [
    ['a 50 MB JWKS', (i: TestIssuer) => { i.faults.target = 'jwks'; i.faults.hugeBytes = 50 * 1024 * 1024 }],
    ['a 50 MB JWKS without Content-Length', (i: TestIssuer) => { i.faults.target = 'jwks'; i.faults.hugeBytes = 50 * 1024 * 1024; i.faults.hugeContentLength = false }],
    ['garbage', (i: TestIssuer) => { i.faults.garbage = true }],
    ['HTTP 500', (i: TestIssuer) => { i.faults.status500 = true }],
    ['a slow issuer (beyond the fetch timeout)', (i: TestIssuer) => { i.faults.slowMs = 3000 }],
    ['a discovery document naming another issuer', (i: TestIssuer) => { i.discoveryOverrides = { issuer: 'https://impostor.example' } }],
  ] as const) {
    it(`${fault}: refused, the proxy stays up, JWTs get 503, nothing reaches the upstream`, async () => {
      set(issuer)
      const fresh = mkdtempSync(path.join(tmpdir(), 'gh-oidc-fault-'))
      const gh = await startProxy({ env: oidcEnv(issuer, up, { GATEHOUSE_STATE_DIR: fresh }), yaml: FAST_JWKS })
      try {
        up.reset()
        const t0 = Date.now()
        const r = await gh.request('/v1/schema', { token: await issuer.sign({ email: 'f@x' }) })
        assert.equal(r.status, 503, r.text)
        assert.ok(Date.now() - t0 < 2500, 'no request waits longer than the fetch timeout (1 s) plus slack')
        assert.equal(up.requests.length, 0)
        assert.equal((await gh.admin('/healthz')).status, 200)
      } finally {
        issuer.resetFaults()
        issuer.discoveryOverrides = {}
        await gh.stop()
        rmSync(fresh, { recursive: true, force: true })
      }
    })
  }
})

describe('OIDC: configuration forms', () => {
  it('Keycloak-style nested claims: usernameClaim and groupsClaim as dotted paths', async () => {
    const issuer = await startIssuer()
    const up = await startUpstream()
    const gh = await startProxy({ env: oidcEnv(issuer, up, { AUTHENTICATION_OIDC_USERNAME_CLAIM: 'preferred_username', AUTHENTICATION_OIDC_GROUPS_CLAIM: 'realm_access.roles' }), yaml: FAST_JWKS })
    try {
      const r = await gh.request('/v1/schema', { token: await issuer.sign({ preferred_username: 'kc-user', realm_access: { roles: ['viewer', 'editor'] } }) })
      assert.equal(r.status, 200, r.text)
      assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'kc-user')
      assert.equal(up.requests[0]?.headers['x-forwarded-groups'], 'viewer,editor')
    } finally {
      await gh.stop()
      await up.close()
      await issuer.close()
    }
  })

  it('a fixed jwksUrl (no discovery) and skipClientIdCheck', async () => {
    const issuer = await startIssuer()
    const up = await startUpstream()
    const gh = await startProxy({
      env: oidcEnv(issuer, up, { AUTHENTICATION_OIDC_JWKS_URL: issuer.jwksUrl, AUTHENTICATION_OIDC_CLIENT_ID: '', AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK: 'true' }),
      yaml: FAST_JWKS,
    })
    try {
      issuer.resetHits()
      const r = await gh.request('/v1/schema', { token: await issuer.sign({ email: 'j@x', aud: 'anything' }) })
      assert.equal(r.status, 200, r.text)
      assert.equal(issuer.hits.discovery, 0)
    } finally {
      await gh.stop()
      await up.close()
      await issuer.close()
    }
  })

  it('the admin list grants rights by OIDC group', async () => {
    const issuer = await startIssuer()
    const up = await startUpstream()
    const gh = await startProxy({
      env: oidcEnv(issuer, up, { AUTHORIZATION_ADMINLIST_ENABLED: 'true', AUTHORIZATION_ADMINLIST_GROUPS: 'admins', AUTHORIZATION_ADMINLIST_READONLY_GROUPS: 'readers' }),
      yaml: FAST_JWKS,
    })
    try {
      const reader = await issuer.sign({ email: 'r@x', groups: ['readers'] })
      const admin = await issuer.sign({ email: 'a@x', groups: ['admins'] })
      assert.equal((await gh.request('/v1/graphql', { method: 'POST', token: reader, body: '{}' })).status, 200)
      up.reset()
      assert.equal((await gh.request('/v1/objects', { method: 'POST', token: reader, body: '{}' })).status, 403)
      assert.equal(up.requests.length, 0)
      assert.equal((await gh.request('/v1/objects', { method: 'POST', token: admin, body: '{}' })).status, 200)
    } finally {
      await gh.stop()
      await up.close()
      await issuer.close()
    }
  })

  it('two issuers: tokens are routed by iss, each checked against its own keys and audience', async () => {
    const a = await startIssuer({ audience: 'gatehouse' })
    const b = await startIssuer({ audience: 'other-client' })
    const up = await startUpstream()
    const gh = await startProxy({
      env: oidcEnv(a, up),
      yaml: `${FAST_JWKS}    additionalIssuers:\n      - issuer: ${b.url}\n        clientId: other-client\n        usernameClaim: sub\n`,
    })
    try {
      const ra = await gh.request('/v1/schema', { token: await a.sign({ email: 'from-a@x' }) })
      assert.equal(ra.status, 200, ra.text)
      const rb = await gh.request('/v1/schema', { token: await b.sign({ sub: 'from-b' }) })
      assert.equal(rb.status, 200, rb.text)
      assert.deepEqual(up.requests.map((r) => r.headers['x-forwarded-user']), ['from-a@x', 'from-b'])
      up.reset()
      // Signed by A's key but claiming B as issuer: checked against B's keys → refused.
      const forged = await a.sign({ sub: 'mallory', iss: b.url, aud: 'other-client' })
      assert.equal((await gh.request('/v1/schema', { token: forged })).status, 401)
      // B's token with A's audience is refused: each issuer has its own client id.
      assert.equal((await gh.request('/v1/schema', { token: await b.sign({ sub: 'x', aud: 'gatehouse' }) })).status, 401)
      assert.equal(up.requests.length, 0)
      const ready = (await gh.admin('/readyz')).json()
      assert.deepEqual(ready.checks.issuers.map((i: { issuer: string }) => i.issuer), [a.url, b.url])
    } finally {
      await gh.stop()
      await up.close()
      await a.close()
      await b.close()
    }
  })

  it('OIDC off: the discovery endpoint is 404 with no body', async () => {
    const up = await startUpstream()
    const gh = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_UPSTREAM_PROFILE: 'weaviate' } })
    try {
      const r = await gh.request('/v1/.well-known/openid-configuration')
      assert.equal(r.status, 404)
      assert.equal(r.text, '')
      assert.equal(r.headers['content-type'], undefined)
      assert.equal(up.requests.length, 0)
    } finally {
      await gh.stop()
      await up.close()
    }
  })
})
