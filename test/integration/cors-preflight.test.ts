/**
 * CORS preflights (SPEC §6): `OPTIONS` with `Origin` and `Access-Control-Request-Method` is
 * public under every profile and reaches the upstream without any identity header (not even an
 * anonymous one), as Weaviate and Qdrant answer preflights themselves; a credential presented on
 * one is still verified (SPEC §5: 401 when bad). Any other `OPTIONS` is a read. Every test
 * checks the status and what the recording upstream received.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type Recorded, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN = 'cors-admin-key-6f1d0a'
const READER = 'cors-reader-key-2b7c93'
const NOBODY = 'cors-nobody-key-88e4d5'
const PREFLIGHT = { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
const IDENTITY = ['x-forwarded-user', 'x-forwarded-groups', 'x-forwarded-email', 'x-forwarded-auth-method']

function only(up: RecordingUpstream): Recorded {
  assert.equal(up.requests.length, 1, 'exactly one request reached the upstream')
  return up.requests[0] as Recorded
}

/** The upstream got a preflight: the CORS headers, the forwarding headers, and no identity at all. */
function assertAnonymousPreflight(rec: Recorded): void {
  assert.equal(rec.method, 'OPTIONS')
  for (const h of IDENTITY) assert.equal(rec.headers[h], undefined, `${h} reached the upstream on a preflight`)
  assert.equal(rec.headers.origin, PREFLIGHT.origin)
  assert.equal(rec.headers['access-control-request-method'], 'POST')
  assert.equal(rec.headers['x-forwarded-for'], '127.0.0.1')
  assert.equal(rec.headers['x-forwarded-proto'], 'https')
  assert.ok(rec.headers['x-forwarded-host'] !== undefined)
  assert.ok(rec.headers['x-request-id'] !== undefined)
  assert.equal(rec.headers.authorization, undefined)
}

const reason = (text: string): string => (JSON.parse(text) as { reason: string }).reason

for (const profile of ['generic', 'weaviate', 'qdrant'] as const) {
  describe(`CORS preflight, ${profile} profile, anonymous access off`, () => {
    let up: RecordingUpstream
    let p: TestProxy
    // A path that is neither public nor a read under the profile's rules for POST.
    const path = profile === 'qdrant' ? '/collections/c/points/delete' : '/v1/objects'

    before(async () => {
      for (const k of [ADMIN, READER, NOBODY]) usedSecrets.add(k)
      up = await startUpstream()
      p = await startProxy({
        env: {
          GATEHOUSE_UPSTREAM_URL: up.url,
          GATEHOUSE_UPSTREAM_PROFILE: profile,
          AUTHENTICATION_APIKEY_ENABLED: 'true',
          AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${ADMIN},${READER},${NOBODY}`,
          AUTHENTICATION_APIKEY_USERS: 'cors-admin,cors-reader,cors-nobody',
          AUTHORIZATION_ADMINLIST_ENABLED: 'true',
          AUTHORIZATION_ADMINLIST_USERS: 'cors-admin',
          AUTHORIZATION_ADMINLIST_READONLY_USERS: 'cors-reader',
        },
      })
    })
    after(async () => {
      await p.stop()
      await up.close()
      assertNoSecretsInLogs(p.logs)
    })

    it('a preflight without a credential reaches the upstream, which answers it; no identity header, not even anonymous', async () => {
      up.reset()
      const r = await p.request(path, { method: 'OPTIONS', headers: { ...PREFLIGHT, 'x-forwarded-user': 'spoof-admin', 'X-Remote-User': 'spoof-remote' } })
      assert.equal(r.status, 200, r.text)
      assert.equal(r.headers['x-upstream'], 'recording', 'the upstream answered')
      const rec = only(up)
      assertAnonymousPreflight(rec)
      assert.equal(rec.headers['x-remote-user'], undefined)
    })

    it('a preflight with a bad credential is 401 (a presented credential is always verified); upstream saw nothing', async () => {
      up.reset()
      const r = await p.request(path, { method: 'OPTIONS', headers: PREFLIGHT, token: 'cors-wrong-key-000000' })
      assert.equal(r.status, 401, r.text)
      assert.equal(reason(r.text), 'ERR_INVALID_API_KEY')
      assert.equal(up.requests.length, 0)
    })

    it('a preflight with a good credential of a user on no list is forwarded, still without identity', async () => {
      up.reset()
      const r = await p.request(path, { method: 'OPTIONS', headers: PREFLIGHT, token: NOBODY })
      assert.equal(r.status, 200, r.text)
      assertAnonymousPreflight(only(up))
    })

    it('a plain OPTIONS (no Origin + Access-Control-Request-Method pair) without a credential is 401; upstream saw nothing', async () => {
      const variants: Record<string, string>[] = [{}, { origin: PREFLIGHT.origin }, { 'access-control-request-method': 'POST' }, { origin: '', 'access-control-request-method': 'POST' }]
      for (const headers of variants) {
        up.reset()
        const r = await p.request(path, { method: 'OPTIONS', headers })
        assert.equal(r.status, 401, `${JSON.stringify(headers)}: ${r.text}`)
        assert.equal(reason(r.text), 'ERR_UNAUTHENTICATED')
        assert.equal(up.requests.length, 0)
      }
    })

    it('a plain OPTIONS is a read: the read-only user is allowed (with identity), a user on no list is 403', async () => {
      up.reset()
      const r = await p.request(path, { method: 'OPTIONS', token: READER })
      assert.equal(r.status, 200, r.text)
      const rec = only(up)
      assert.equal(rec.headers['x-forwarded-user'], 'cors-reader')
      assert.equal(rec.headers['x-forwarded-auth-method'], 'apikey')
      up.reset()
      const denied = await p.request(path, { method: 'OPTIONS', token: NOBODY })
      assert.equal(denied.status, 403, denied.text)
      assert.equal(up.requests.length, 0)
      // positive control: the same reader may not write there
      const write = await p.request(path, { method: 'POST', token: READER, body: '{}', headers: { 'content-type': 'application/json' } })
      assert.equal(write.status, 403, write.text)
      assert.equal(up.requests.length, 0)
    })

    it('an OPTIONS with the preflight headers and a body is not a preflight: 401 without a credential, upstream saw nothing', async () => {
      up.reset()
      const r = await p.request(path, { method: 'OPTIONS', headers: { ...PREFLIGHT, 'content-type': 'application/json' }, body: '{"delete":"all"}' })
      assert.equal(r.status, 401, r.text)
      assert.equal(up.requests.length, 0)
    })

    it('HTTP/2: a preflight without a credential is forwarded without identity', async () => {
      up.reset()
      const s = await h2connect(p.url, p.ca)
      try {
        const r = await h2request(s, { ':method': 'OPTIONS', ':path': path, ...PREFLIGHT })
        assert.equal(r.status, 200, r.text)
      } finally {
        await h2close(s)
      }
      assertAnonymousPreflight(only(up))
    })
  })
}
