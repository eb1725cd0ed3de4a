/**
 * Credentials in the query string (`access_token`, `api_key`, `apikey`, `api-key`, any case,
 * percent-encoded names too) never reach the upstream, whose access log would keep them: with
 * query tokens off (they are not a credential then, and are still removed), on together with a
 * bearer header, and on alone. The rest of the query reaches the upstream byte for byte and in
 * order; no log line holds a token (docs/security.md, docs/configuration.md).
 */
import assert from 'node:assert/strict'
import https from 'node:https'
import { after, before, describe, it } from 'node:test'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startRefusingUpgradeUpstream, upgradeStatus, type RefusingUpgradeUpstream } from '../helpers/upgrade.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'query-cred-key-7d21a9f0'
const OTHER = 'query-cred-other-3b8e61'
const SECRETS = ['qs-secret-api-key-1a2b3c', 'qs-secret-apikey-4d5e6f', 'qs-secret-upper-7a8b9c', 'qs-secret-dash-0d1e2f', 'qs-secret-encoded-3a4b5c']
const KEY_ENV = { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${KEY},${OTHER}`, AUTHENTICATION_APIKEY_USERS: 'q-user,q-other' }

// Everything that is not a credential, with the bytes a re-encoder would change: an encoded
// slash, `+`, a UTF-8 escape, an empty value, an empty pair, a bare name, a repeated name.
const REST = ['a=1', 'b=x%2Fy', 'c=a+b', 'd=%E2%9C%93', 'e=', '', 'flag', 'a=2', 'my_access_token=not-a-name-match', 'access_tokens=neither']
const REST_QUERY = REST.join('&')

/** A request with a raw target over HTTP/1.1 (nothing re-encoded on the way). */
function get(p: TestProxy, target: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const u = new URL(p.url)
  return new Promise((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, path: target, headers, agent: false, ca: p.ca }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Interleave credential parameters with REST, so removal must keep the others' order. */
function interleave(creds: readonly string[]): string {
  const out: string[] = []
  const n = Math.max(creds.length, REST.length)
  for (let i = 0; i < n; i++) {
    if (i < creds.length) out.push(creds[i] as string)
    if (i < REST.length) out.push(REST[i] as string)
  }
  return out.join('&')
}

const bearer = (k: string): Record<string, string> => ({ authorization: `Bearer ${k}` })

function lastUrl(up: RecordingUpstream): string {
  assert.equal(up.requests.length, 1, 'exactly one request reached the upstream')
  return (up.requests[0] as { url: string }).url
}

describe('query credentials: query tokens off (the default)', () => {
  let up: RecordingUpstream
  let p: TestProxy

  before(async () => {
    for (const s of [KEY, OTHER, ...SECRETS]) usedSecrets.add(s)
    up = await startUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url } })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs, [KEY, OTHER, ...SECRETS])
  })

  it('every credential name in every spelling is removed; the other parameters arrive byte for byte, in order', async () => {
    up.reset()
    const creds = [`access_token=${OTHER}`, `api_key=${SECRETS[0]}`, `apikey=${SECRETS[1]}`, `API_KEY=${SECRETS[2]}`, `api-key=${SECRETS[3]}`, `Access_Token=${OTHER}`, `access%5Ftoken=${SECRETS[4]}`, `api%2Dkey=${SECRETS[4]}`]
    const r = await get(p, `/v1/things?${interleave(creds)}`, bearer(KEY))
    assert.equal(r.status, 200, r.text)
    assert.equal(lastUrl(up), `/v1/things?${REST_QUERY}`)
  })

  it('a query token is not a credential while they are off: 401 without another credential, upstream saw nothing', async () => {
    up.reset()
    const r = await get(p, `/v1/things?access_token=${KEY}`)
    assert.equal(r.status, 401, r.text)
    assert.equal(JSON.parse(r.text).reason, 'ERR_UNAUTHENTICATED')
    assert.equal(up.requests.length, 0)
  })

  it('a query of nothing but credentials leaves no `?` behind; a query without any is untouched', async () => {
    up.reset()
    assert.equal((await get(p, `/v1/things?access_token=${OTHER}&api_key=${SECRETS[0]}`, bearer(KEY))).status, 200)
    assert.equal(lastUrl(up), '/v1/things')
    up.reset()
    assert.equal((await get(p, `/v1/things?${REST_QUERY}`, bearer(KEY))).status, 200)
    assert.equal(lastUrl(up), `/v1/things?${REST_QUERY}`)
  })

  it('a double-encoded name (`access%255Ftoken`) is kept: the upstream decodes it once, to `access%5Ftoken`, not a credential name', async () => {
    up.reset()
    assert.equal((await get(p, '/v1/things?access%255Ftoken=visible&a=1', bearer(KEY))).status, 200)
    assert.equal(lastUrl(up), '/v1/things?access%255Ftoken=visible&a=1')
  })

  it('HTTP/2: removed the same way', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    try {
      const r = await h2request(s, { ':path': `/v1/things?${interleave([`access_token=${OTHER}`, `api_key=${SECRETS[0]}`])}`, ...bearer(KEY) })
      assert.equal(r.status, 200, r.text)
    } finally {
      await h2close(s)
    }
    assert.equal(lastUrl(up), `/v1/things?${REST_QUERY}`)
  })
})

describe('query credentials: query tokens on', () => {
  let up: RecordingUpstream
  let p: TestProxy

  before(async () => {
    up = await startUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: 'authentication:\n  allowQueryToken: true\n' })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs, [KEY, OTHER, ...SECRETS])
  })

  it('alone: `access_token` authenticates and is removed; the upstream sees the user, not the key', async () => {
    up.reset()
    const r = await get(p, `/v1/things?${interleave([`access_token=${KEY}`])}`)
    assert.equal(r.status, 200, r.text)
    assert.equal(lastUrl(up), `/v1/things?${REST_QUERY}`)
    assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'q-user')
  })

  it('an encoded name (`access%5Ftoken`) is the same parameter: it authenticates and is removed', async () => {
    up.reset()
    const r = await get(p, `/v1/things?access%5Ftoken=${KEY}&a=1`)
    assert.equal(r.status, 200, r.text)
    assert.equal(lastUrl(up), '/v1/things?a=1')
    assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'q-user')
  })

  it('with a bearer header too: the same token in both is one credential, and the query copy is removed; api_key and friends are removed', async () => {
    up.reset()
    const r = await get(p, `/v1/things?${interleave([`access_token=${KEY}`, `api_key=${SECRETS[0]}`, `APIKEY=${SECRETS[1]}`])}`, bearer(KEY))
    assert.equal(r.status, 200, r.text)
    assert.equal(lastUrl(up), `/v1/things?${REST_QUERY}`)
  })

  it('with a bearer header and a different query token: 400 ambiguous, upstream saw nothing', async () => {
    up.reset()
    const r = await get(p, `/v1/things?access_token=${OTHER}&a=1`, bearer(KEY))
    assert.equal(r.status, 400, r.text)
    assert.equal(JSON.parse(r.text).reason, 'ERR_AMBIGUOUS_CREDENTIAL')
    assert.equal(up.requests.length, 0)
  })

  it('only the exact name is a credential (RFC 6750 §2.3): `ACCESS_TOKEN` is removed but does not authenticate', async () => {
    up.reset()
    const r = await get(p, `/v1/things?ACCESS_TOKEN=${KEY}&a=1`)
    assert.equal(r.status, 401, r.text)
    assert.equal(up.requests.length, 0)
    const ok = await get(p, `/v1/things?ACCESS_TOKEN=${OTHER}&a=1`, bearer(KEY))
    assert.equal(ok.status, 200, ok.text)
    assert.equal(lastUrl(up), '/v1/things?a=1')
  })

  it('no log line holds a token, also at trace level, and the access line has no query', () => {
    const access = p.logs.filter((l) => l.includes('/v1/things'))
    assert.ok(access.length >= 5, 'the access lines were captured')
    for (const l of access) assert.ok(!l.includes('?'), `a log line carries a query: ${l.slice(0, 200)}`)
    for (const l of p.logs) for (const s of [KEY, OTHER, ...SECRETS]) assert.ok(!l.includes(s), `a log line holds a token: ${l.slice(0, 200)}`)
  })
})

describe('query credentials: a WebSocket handshake', () => {
  let p: TestProxy
  let server: RefusingUpgradeUpstream

  before(async () => {
    server = await startRefusingUpgradeUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: server.url }, yaml: 'authentication:\n  allowQueryToken: true\n' })
  })
  after(async () => {
    await p.stop()
    await server.close()
    assertNoSecretsInLogs(p.logs, [KEY, ...SECRETS])
  })

  it('a browser-style `?access_token=` on the upgrade authenticates and never reaches the upstream’s handshake', async () => {
    const status = await upgradeStatus(p, `/ws?${interleave([`access_token=${KEY}`, `api_key=${SECRETS[0]}`])}`, { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' })
    assert.equal(status, 403, 'authenticated, and the upstream’s own refusal relayed')
    assert.deepEqual(
      server.handshakes.map((h) => h.url),
      [`/ws?${REST_QUERY}`],
    )
  })
})
