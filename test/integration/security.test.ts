/**
 * Attacks from the advisories of anchors.md §3 against a running gatehouse (in-process, real TLS,
 * real recording upstream). Every attack asserts both the answer and what reached the upstream:
 * nothing, or exactly the sanitized request. Raw paths and raw header spellings are sent with
 * node:https (path: …, headers as a raw array) so no client normalizes them first.
 */
import assert from 'node:assert/strict'
import https from 'node:https'
import http from 'node:http'
import { after, before, describe, it } from 'node:test'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { tlsWire } from '../helpers/rawClient.ts'
import { startUpstream, type Recorded, type RecordingUpstream } from '../helpers/upstream.ts'

const JANE = 'jane-secret-key-9f3a'
const IAN = 'ian-secret-key-4c1b'
const GEN_KEY = 'generic-secret-key-77d0'
const Q_ADMIN = 'qdrant-admin-key-1a2b'
const Q_READER = 'qdrant-reader-key-3c4d'
const UPSTREAM_KEY_VAR = 'GH_SECURITY_TEST_UPSTREAM_KEY'
const UPSTREAM_KEY = 'upstream-own-secret-5e6f'

// --- small clients that do not normalize anything -------------------------------------------

interface RawReply {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
}

/** One request with a raw path and raw header list (name, value pairs, sent in this order and spelling). */
function raw(p: TestProxy, o: { method?: string; path: string; headers?: [string, string][]; body?: string }): Promise<RawReply> {
  const u = new URL(p.url)
  const flat: string[] = ['Host', u.host]
  for (const [k, v] of o.headers ?? []) flat.push(k, v)
  if (o.body !== undefined) flat.push('Content-Length', String(Buffer.byteLength(o.body)))
  const mod = u.protocol === 'https:' ? https : http
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: u.hostname, port: u.port, method: o.method ?? 'GET', path: o.path, headers: flat as unknown as http.OutgoingHttpHeaders, agent: false, ca: p.ca },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(o.body)
  })
}

// --- assertions -------------------------------------------------------------------------------

/** Comparison form of a header name across spellings (case, `_`, `.`, `-`). */
const canon = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '')

/** Every (name, value) the upstream received whose name is a spelling of `name`. */
function received(rec: Recorded | undefined, name: string): [string, string][] {
  assert.ok(rec !== undefined, 'the upstream received no request')
  const out: [string, string][] = []
  for (let i = 0; i < rec.rawHeaders.length; i += 2) if (canon(rec.rawHeaders[i] as string) === canon(name)) out.push([rec.rawHeaders[i] as string, rec.rawHeaders[i + 1] as string])
  return out
}

/** The single value the upstream received for `name` (in any spelling); fails when there were several. */
function one(rec: Recorded | undefined, name: string): string | undefined {
  const r = received(rec, name)
  assert.ok(r.length <= 1, `the upstream received ${name} ${r.length} times: ${JSON.stringify(r)}`)
  return r[0]?.[1]
}

/** Every value the upstream received, in one string (to look for attacker-chosen markers). */
const allValues = (rec: Recorded | undefined): string => (rec === undefined ? '' : rec.rawHeaders.filter((_, i) => i % 2 === 1).join('\n'))

/** SPEC §9: the JSON error body, its headers and its reason code. */
function assertError(r: RawReply, status: number, reason?: string): { code: number; message: string; reason: string; requestId: string } {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`)
  assert.equal(r.headers['content-type'], 'application/json')
  assert.equal(r.headers['cache-control'], 'no-store')
  const b = JSON.parse(r.text) as { code: number; message: string; reason: string; requestId: string }
  assert.deepEqual(Object.keys(b).sort(), ['code', 'message', 'reason', 'requestId'])
  assert.equal(b.code, status)
  assert.equal(typeof b.message, 'string')
  assert.ok(b.message.length > 0)
  assert.match(b.reason, /^ERR_[A-Z_]+$/)
  if (reason !== undefined) assert.equal(b.reason, reason)
  assert.ok(b.requestId.length > 0)
  assert.equal(r.headers['x-request-id'], b.requestId, 'the X-Request-Id header and the body agree')
  if (status === 401) assert.match(String(r.headers['www-authenticate']), /^Bearer realm="gatehouse"/)
  return b
}

const bearer = (k: string): [string, string] => ['Authorization', `Bearer ${k}`]
const UUIDISH = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function jwtShaped(payload: Record<string, unknown>): string {
  const b = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${b({ alg: 'RS256', typ: 'JWT', kid: 'k1' })}.${b(payload)}.${Buffer.from('not-a-real-signature').toString('base64url')}`
}

// ------------------------------------------------------------------------------------------------

describe('security: weaviate profile, keys jane (admin) / ian (read-only), upstream.headers from env', () => {
  let up: RecordingUpstream
  let px: TestProxy

  before(async () => {
    process.env[UPSTREAM_KEY_VAR] = UPSTREAM_KEY
    usedSecrets.add(JANE).add(IAN).add(UPSTREAM_KEY)
    up = await startUpstream()
    px = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${JANE},${IAN}`,
        AUTHENTICATION_APIKEY_USERS: 'jane@doe.com,ian-smith',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'jane@doe.com',
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'ian-smith',
      },
      yaml: `upstream:\n  headers:\n    X-Upstream-Key: {env: ${UPSTREAM_KEY_VAR}}\n`,
    })
  })

  after(async () => {
    await px?.stop()
    await up?.close()
    delete process.env[UPSTREAM_KEY_VAR]
    assertNoSecretsInLogs(px.logs)
  })

  describe('managed identity headers in any spelling never reach the upstream', () => {
    const spoofs: [string, string][] = [
      ['x-forwarded-user', 'jane@doe.com'],
      ['X-FORWARDED-USER', 'spoof-upper'],
      ['X_Forwarded_User', 'spoof-underscore'],
      ['X-Forwarded_User', 'spoof-mixed'],
      ['X.Forwarded.User', 'spoof-dots'],
      ['X-Forwarded-Groups', 'spoof-admins'],
      ['x_forwarded_groups', 'spoof-admins-2'],
      ['X-Forwarded-Email', 'spoof@evil.example'],
      ['X.Forwarded.Email', 'spoof2@evil.example'],
      ['X-Forwarded-Auth-Method', 'spoof-oidc'],
      ['X_FORWARDED_AUTH_METHOD', 'spoof-local'],
    ]

    it('read-only ian with every spelling: 200, upstream sees exactly gatehouse’s values', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), ...spoofs, ['X-Harmless', 'kept-marker']] })
      assert.equal(r.status, 200, r.text)
      assert.equal(up.requests.length, 1)
      const rec = up.requests[0]
      // positive control: the raw header list did reach gatehouse and unmanaged headers pass
      assert.equal(one(rec, 'X-Harmless'), 'kept-marker')
      assert.deepEqual(received(rec, 'X-Forwarded-User'), [['X-Forwarded-User', 'ian-smith']])
      assert.deepEqual(received(rec, 'X-Forwarded-Auth-Method'), [['X-Forwarded-Auth-Method', 'apikey']])
      assert.deepEqual(received(rec, 'X-Forwarded-Groups'), [], 'an API-key principal has no groups; the client’s groups are gone')
      assert.deepEqual(received(rec, 'X-Forwarded-Email'), [])
      const values = allValues(rec)
      for (const [, v] of spoofs) assert.ok(!values.includes(v), `spoofed value ${v} reached the upstream`)
    })

    it('a spoofed admin name does not grant a write: ian POST /v1/objects with X-Forwarded-User: jane@doe.com → 403, nothing upstream', async () => {
      up.reset()
      const r = await raw(px, { method: 'POST', path: '/v1/objects', body: '{}', headers: [bearer(IAN), ['X-Forwarded-User', 'jane@doe.com'], ['X_Forwarded_Groups', 'admin']] })
      assertError(r, 403, 'ERR_FORBIDDEN')
      assert.equal(up.requests.length, 0)
    })

    it('without a credential on a public path the upstream sees anonymous, not the client’s claim (Envoy #35553)', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/.well-known/ready', headers: spoofs })
      assert.equal(r.status, 200)
      const rec = up.requests[0]
      assert.deepEqual(received(rec, 'X-Forwarded-User'), [['X-Forwarded-User', 'anonymous']])
      assert.deepEqual(received(rec, 'X-Forwarded-Auth-Method'), [['X-Forwarded-Auth-Method', 'anonymous']])
      assert.deepEqual(received(rec, 'X-Forwarded-Groups'), [])
      assert.deepEqual(received(rec, 'X-Forwarded-Email'), [])
    })
  })

  describe('Connection cannot remove what gatehouse injects (Traefik CVE-2024-45410)', () => {
    it('Connection: close, X-Forwarded-User → the upstream still gets X-Forwarded-User: ian-smith', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), ['Connection', 'close, X-Forwarded-User'], ['X-Forwarded-User', 'jane@doe.com']] })
      assert.equal(r.status, 200)
      assert.deepEqual(received(up.requests[0], 'X-Forwarded-User'), [['X-Forwarded-User', 'ian-smith']])
    })

    it('Connection naming X-Request-Id and X-Forwarded-* → all still set, once; a header named in Connection is dropped', async () => {
      up.reset()
      const r = await raw(px, {
        path: '/v1/schema',
        headers: [
          bearer(IAN),
          ['Connection', 'X-Request-Id, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Auth-Method, X-Custom-Hop'],
          ['X-Request-Id', 'client-req-0001'],
          ['X-Custom-Hop', 'hop-marker'],
          ['X-Other', 'stays'],
        ],
      })
      assert.equal(r.status, 200)
      const rec = up.requests[0]
      assert.equal(one(rec, 'X-Request-Id'), 'client-req-0001', 'the well-formed client id is still sent, once')
      assert.equal(r.headers['x-request-id'], 'client-req-0001')
      assert.equal(one(rec, 'X-Forwarded-For'), '127.0.0.1')
      assert.equal(one(rec, 'X-Forwarded-Proto'), 'https')
      assert.equal(one(rec, 'X-Forwarded-Host'), new URL(px.url).host)
      assert.equal(one(rec, 'X-Forwarded-Auth-Method'), 'apikey')
      assert.equal(one(rec, 'X-Forwarded-User'), 'ian-smith')
      // positive control: gatehouse does honour Connection for ordinary headers
      assert.deepEqual(received(rec, 'X-Custom-Hop'), [])
      assert.equal(one(rec, 'X-Other'), 'stays')
      for (const [, v] of received(rec, 'Connection')) assert.doesNotMatch(v, /x-/i, 'the client’s Connection list is not forwarded')
    })
  })

  describe('method override headers (read cannot become a write)', () => {
    it('ian GET /v1/schema with X-HTTP-Method-Override: DELETE → forwarded as GET without any override header', async () => {
      up.reset()
      const r = await raw(px, {
        path: '/v1/schema',
        headers: [bearer(IAN), ['X-HTTP-Method-Override', 'DELETE'], ['X-Method-Override', 'DELETE'], ['X-HTTP-Method', 'DELETE'], ['X_HTTP_Method_Override', 'DELETE']],
      })
      assert.equal(r.status, 200)
      const rec = up.requests[0]
      assert.equal(rec?.method, 'GET')
      for (const h of ['X-HTTP-Method-Override', 'X-Method-Override', 'X-HTTP-Method']) assert.deepEqual(received(rec, h), [], `${h} reached the upstream`)
      assert.ok(!allValues(rec).includes('DELETE'))
    })

    it('ian POST /v1/objects with X-HTTP-Method-Override: GET → 403, nothing upstream', async () => {
      up.reset()
      const r = await raw(px, { method: 'POST', path: '/v1/objects', body: '{}', headers: [bearer(IAN), ['X-HTTP-Method-Override', 'GET']] })
      assertError(r, 403, 'ERR_FORBIDDEN')
      assert.equal(up.requests.length, 0)
    })

    const lowerCase = `post /v1/objects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${IAN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`

    it('a lower-case method (keycloak-gatekeeper CVE-2020-14359) is refused with 400, nothing upstream', async () => {
      up.reset()
      const text = await tlsWire(px, lowerCase)
      assert.match(text, /^HTTP\/1\.1 400 /)
      assert.equal(up.requests.length, 0)
    })

    it('the 400 for a request that does not parse is the JSON error of SPEC §9 too', async () => {
      const text = await tlsWire(px, lowerCase)
      const [head, body] = text.split('\r\n\r\n')
      assert.match(String(head), /^HTTP\/1\.1 400 /)
      assert.match(String(head), /\r\ncontent-type: application\/json/i, 'SPEC §9: every error from gatehouse itself is JSON')
      assert.match(String(head), /\r\ncache-control: no-store/i)
      const b = JSON.parse(String(body)) as { code: number; reason: string; requestId: string }
      assert.equal(b.code, 400)
      assert.match(b.reason, /^ERR_/)
    })
  })

  describe('path tricks by the read-only user (judged path = forwarded path)', () => {
    const attacks = [
      '/v1/graphql/../objects',
      '/v1/graphql/%2e%2e/objects',
      '/v1/graphql/%2E%2E/objects',
      '/v1/graphql/.%2e/objects',
      '/v1/graphql%2f..%2fobjects',
      '/v1/graphql%2F..%2Fobjects',
      '/v1/graphql/..%2fobjects',
      '/v1/graphql/%2e%2e%2fobjects',
      '/v1/graphql%252f..%252fobjects',
      '/v1/graphql/%252e%252e/objects',
      '//v1//objects',
      '/v1/./objects',
      '/v1/objects;/../graphql',
      '/v1/graphql;/../objects',
      '/v1/graphql\\..\\objects',
      '/v1/graphql#/../objects',
      '/v1/graphql/../objects?next=/v1/graphql',
    ]
    for (const p of attacks) {
      it(`ian POST ${p} → 403 or 400, nothing upstream`, async () => {
        up.reset()
        const r = await raw(px, { method: 'POST', path: p, body: '{}', headers: [bearer(IAN)] })
        assert.ok(r.status === 403 || r.status === 400, `got ${r.status}: ${r.text}`)
        assertError(r, r.status, r.status === 403 ? 'ERR_FORBIDDEN' : 'ERR_BAD_PATH')
        assert.equal(up.requests.length, 0, `the upstream received ${up.requests[0]?.url}`)
      })
    }

    const allowed: [string, string][] = [
      ['/v1/objects/../graphql', '/v1/graphql'],
      ['/v1/objects/%2e%2e/graphql', '/v1/graphql'],
      ['/v1//graphql', '/v1/graphql'],
      ['/v1/./graphql', '/v1/graphql'],
    ]
    for (const [p, seen] of allowed) {
      it(`positive control: ian POST ${p} is a read; the upstream sees ${seen}`, async () => {
        up.reset()
        const r = await raw(px, { method: 'POST', path: p, body: '{}', headers: [bearer(IAN)] })
        assert.equal(r.status, 200, r.text)
        assert.equal(up.requests.length, 1)
        assert.equal(up.requests[0]?.url, seen)
        assert.equal(up.requests[0]?.method, 'POST')
      })
    }

    it('jane (admin) POST /v1/graphql/../objects is allowed and the upstream sees the judged path /v1/objects', async () => {
      up.reset()
      const r = await raw(px, { method: 'POST', path: '/v1/graphql/../objects', body: '{}', headers: [bearer(JANE)] })
      assert.equal(r.status, 200)
      assert.equal(up.requests[0]?.url, '/v1/objects')
    })

    it('dot segments cannot climb above the root: GET /v1/../../etc/passwd reaches the upstream as /etc/passwd', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/../../etc/passwd', headers: [bearer(IAN)] })
      assert.equal(r.status, 200)
      assert.equal(up.requests[0]?.url, '/etc/passwd')
    })
  })

  describe('forwarding headers from an untrusted peer', () => {
    it('X-Forwarded-*, Forwarded, X-Real-IP and URL-rewrite headers are replaced or removed', async () => {
      up.reset()
      const r = await raw(px, {
        path: '/v1/schema',
        headers: [
          bearer(IAN),
          ['X-Forwarded-For', '6.6.6.1'],
          ['X_Forwarded_For', '6.6.6.2'],
          ['X-Forwarded-Host', 'evil-host.example'],
          ['X-Forwarded_Host', 'evil-host2.example'],
          ['X-Forwarded-Proto', 'evil-proto'],
          ['X-Forwarded-Port', '6666'],
          ['X-Forwarded-Prefix', '/evil-prefix'],
          ['X-Forwarded-Uri', '/evil-uri'],
          ['Forwarded', 'for=6.6.6.3;host=evil-fwd.example;proto=http'],
          ['X-Real-IP', '6.6.6.4'],
          ['X-Original-URL', '/evil-original'],
          ['X-Rewrite-URL', '/evil-rewrite'],
          ['X-Envoy-Original-Path', '/evil-envoy'],
        ],
      })
      assert.equal(r.status, 200)
      const rec = up.requests[0]
      assert.equal(one(rec, 'X-Forwarded-For'), '127.0.0.1')
      assert.equal(one(rec, 'X-Forwarded-Proto'), 'https')
      assert.equal(one(rec, 'X-Forwarded-Host'), new URL(px.url).host)
      for (const h of ['X-Forwarded-Port', 'X-Forwarded-Prefix', 'X-Forwarded-Uri', 'Forwarded', 'X-Real-IP', 'X-Original-URL', 'X-Rewrite-URL', 'X-Envoy-Original-Path']) {
        assert.deepEqual(received(rec, h), [], `${h} reached the upstream`)
      }
      assert.doesNotMatch(allValues(rec), /6\.6\.6|evil/)
      assert.equal(rec?.url, '/v1/schema')
    })
  })

  describe('X-Request-Id', () => {
    it('a well-formed id is kept (upstream and response)', async () => {
      up.reset()
      const id = 'abc-123_def.456:789'
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), ['X-Request-Id', id]] })
      assert.equal(r.status, 200)
      assert.equal(one(up.requests[0], 'X-Request-Id'), id)
      assert.equal(r.headers['x-request-id'], id)
    })

    for (const [what, id] of [
      ['with spaces', 'has spaces in it'],
      ['200 characters', 'a'.repeat(200)],
      ['with a CR-free injection attempt', 'id";evil=1'],
      ['empty', ''],
    ] as const) {
      it(`an id ${what} is replaced by a generated one`, async () => {
        up.reset()
        const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), ['X-Request-Id', id]] })
        assert.equal(r.status, 200)
        const sent = one(up.requests[0], 'X-Request-Id')
        assert.notEqual(sent, id)
        assert.match(String(sent), UUIDISH)
        assert.equal(r.headers['x-request-id'], sent)
      })
    }

    it('two X-Request-Id headers → one generated id upstream', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), ['X-Request-Id', 'first-id'], ['X-Request-Id', 'second-id']] })
      assert.equal(r.status, 200)
      const got = received(up.requests[0], 'X-Request-Id')
      assert.equal(got.length, 1)
      assert.match(String(got[0]?.[1]), UUIDISH)
    })

    it('an error answer carries the kept id in header and body', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [['X-Request-Id', 'err-id-42']] })
      const b = assertError(r, 401, 'ERR_UNAUTHENTICATED')
      assert.equal(b.requestId, 'err-id-42')
      assert.equal(up.requests.length, 0)
    })
  })

  describe('credentials', () => {
    it('Authorization: Basic → 401 invalid_token, nothing upstream', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [['Authorization', `Basic ${Buffer.from('ian-smith:x').toString('base64')}`]] })
      assertError(r, 401, 'ERR_INVALID_TOKEN')
      assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/)
      assert.equal(up.requests.length, 0)
    })

    it('two Authorization headers (even a valid key first) → 400, nothing upstream', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), bearer(JANE)] })
      assertError(r, 400, 'ERR_AMBIGUOUS_CREDENTIAL')
      const same = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), bearer(IAN)] })
      assertError(same, 400, 'ERR_AMBIGUOUS_CREDENTIAL')
      assert.equal(up.requests.length, 0)
    })

    it('a JWT-shaped token from an unknown issuer → 401 ERR_UNKNOWN_ISSUER (never tried as an API key), nothing upstream', async () => {
      up.reset()
      const t = jwtShaped({ iss: 'https://evil.example', sub: 'jane@doe.com', exp: Math.floor(Date.now() / 1000) + 600 })
      usedSecrets.add(t)
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(t)] })
      assertError(r, 401, 'ERR_UNKNOWN_ISSUER')
      const noIss = await raw(px, { path: '/v1/schema', headers: [bearer(jwtShaped({ sub: 'x' }))] })
      assertError(noIss, 401, 'ERR_UNKNOWN_ISSUER')
      assert.equal(up.requests.length, 0)
    })

    it('the client’s Authorization is not forwarded by default', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN)] })
      assert.equal(r.status, 200)
      assert.deepEqual(received(up.requests[0], 'Authorization'), [])
      assert.ok(!allValues(up.requests[0]).includes(IAN))
    })

    it('?access_token= is ignored unless enabled: 401, nothing upstream', async () => {
      up.reset()
      const r = await raw(px, { path: `/v1/schema?access_token=${IAN}` })
      assertError(r, 401, 'ERR_UNAUTHENTICATED')
      assert.equal(up.requests.length, 0)
    })
  })

  describe('upstream.headers', () => {
    it('X-Upstream-Key from {env: VAR} replaces a client-sent copy (any case)', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN), ['X-Upstream-Key', 'client-forged-1'], ['x-upstream-key', 'client-forged-2']] })
      assert.equal(r.status, 200)
      assert.deepEqual(
        received(up.requests[0], 'X-Upstream-Key').map(([, v]) => v),
        [UPSTREAM_KEY],
      )
      assert.ok(!allValues(up.requests[0]).includes('client-forged'))
    })

    it('…and is set when the client sent none', async () => {
      up.reset()
      const r = await raw(px, { path: '/v1/schema', headers: [bearer(IAN)] })
      assert.equal(r.status, 200)
      assert.equal(one(up.requests[0], 'X-Upstream-Key'), UPSTREAM_KEY)
    })
  })

  describe('error answers', () => {
    it('HEAD errors have the JSON headers and no body on the wire', async () => {
      up.reset()
      const head = await tlsWire(px, 'HEAD /v1/schema HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      const [h401, body401] = head.split('\r\n\r\n')
      assert.match(String(h401), /^HTTP\/1\.1 401 /)
      assert.match(String(h401), /\r\ncontent-type: application\/json/i)
      assert.match(String(h401), /\r\ncache-control: no-store/i)
      assert.equal(body401, '')
      const bad = await tlsWire(px, `HEAD /v1/a%2fb HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${IAN}\r\nConnection: close\r\n\r\n`)
      const [h400, body400] = bad.split('\r\n\r\n')
      assert.match(String(h400), /^HTTP\/1\.1 400 /)
      assert.equal(body400, '')
      // positive control: the same request as GET has a body on the wire
      const get = await tlsWire(px, 'GET /v1/schema HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      assert.match(get, /^HTTP\/1\.1 401 /)
      assert.match(String(get.split('\r\n\r\n')[1]), /"reason":"ERR_UNAUTHENTICATED"/)
      assert.equal(up.requests.length, 0)
    })

    it('401 / 403 / 400 answers all have the JSON shape', async () => {
      assertError(await raw(px, { path: '/v1/schema' }), 401, 'ERR_UNAUTHENTICATED')
      assertError(await raw(px, { path: '/v1/schema', headers: [bearer('not-a-key-of-ours')] }), 401, 'ERR_INVALID_API_KEY')
      assertError(await raw(px, { method: 'DELETE', path: '/v1/schema/Article', headers: [bearer(IAN)] }), 403, 'ERR_FORBIDDEN')
      assertError(await raw(px, { path: '/v1/a%2fb', headers: [bearer(IAN)] }), 400, 'ERR_BAD_PATH')
    })
  })
})

describe('security: generic profile, anonymous on, trusted proxy 127.0.0.1, passAuthorization, query token', () => {
  let up: RecordingUpstream
  let px: TestProxy

  before(async () => {
    usedSecrets.add(GEN_KEY)
    up = await startUpstream()
    px = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: GEN_KEY,
        AUTHENTICATION_APIKEY_USERS: 'gen-user',
      },
      yaml: 'upstream:\n  profile: generic\ntrustedProxies: [127.0.0.1]\nidentityHeaders:\n  passAuthorization: true\nauthentication:\n  allowQueryToken: true\n',
    })
  })

  after(async () => {
    await px?.stop()
    await up?.close()
    assertNoSecretsInLogs(px.logs)
  })

  it('no credential → forwarded as anonymous', async () => {
    up.reset()
    const r = await raw(px, { method: 'POST', path: '/anything', body: 'x', headers: [['X-Forwarded-User', 'gen-user']] })
    assert.equal(r.status, 200)
    assert.equal(one(up.requests[0], 'X-Forwarded-User'), 'anonymous')
    assert.equal(one(up.requests[0], 'X-Forwarded-Auth-Method'), 'anonymous')
  })

  it('an invalid key is 401 even with anonymous access on; nothing upstream', async () => {
    up.reset()
    assertError(await raw(px, { path: '/anything', headers: [bearer('wrong-key-xyz')] }), 401, 'ERR_INVALID_API_KEY')
    assertError(await raw(px, { path: '/anything', headers: [['Authorization', 'Basic Z2VuLXVzZXI6eA==']] }), 401, 'ERR_INVALID_TOKEN')
    assertError(await raw(px, { path: '/anything', headers: [['Authorization', 'Bearer ']] }), 401)
    assertError(await raw(px, { path: '/anything?access_token=wrong-key-xyz' }), 401, 'ERR_INVALID_API_KEY')
    assert.equal(up.requests.length, 0)
  })

  it('passAuthorization: true forwards the client’s Authorization as sent', async () => {
    up.reset()
    const r = await raw(px, { path: '/anything', headers: [bearer(GEN_KEY)] })
    assert.equal(r.status, 200)
    assert.equal(one(up.requests[0], 'Authorization'), `Bearer ${GEN_KEY}`)
    assert.equal(one(up.requests[0], 'X-Forwarded-User'), 'gen-user')
  })

  it('from a trusted proxy the X-Forwarded-For chain is appended to', async () => {
    up.reset()
    const r = await raw(px, { path: '/anything', headers: [['X-Forwarded-For', '203.0.113.7'], ['X-Forwarded-For', '198.51.100.2']] })
    assert.equal(r.status, 200)
    assert.equal(one(up.requests[0], 'X-Forwarded-For'), '203.0.113.7, 198.51.100.2, 127.0.0.1')
    up.reset()
    await raw(px, { path: '/anything' })
    assert.equal(one(up.requests[0], 'X-Forwarded-For'), '127.0.0.1', 'positive control: without a chain only the peer')
  })

  it('…but identity headers are stripped even from a trusted proxy', async () => {
    up.reset()
    const r = await raw(px, { path: '/anything', headers: [['X-Forwarded-User', 'root'], ['X_Forwarded_Groups', 'admins']] })
    assert.equal(r.status, 200)
    assert.deepEqual(received(up.requests[0], 'X-Forwarded-User'), [['X-Forwarded-User', 'anonymous']])
    assert.deepEqual(received(up.requests[0], 'X-Forwarded-Groups'), [])
  })

  it('allowQueryToken: ?access_token= authenticates and is removed from the forwarded query', async () => {
    up.reset()
    const r = await raw(px, { method: 'POST', path: `/things?a=1&access_token=${GEN_KEY}&b=%2F2`, body: '{}' })
    assert.equal(r.status, 200)
    assert.equal(up.requests.length, 1)
    assert.equal(up.requests[0]?.url, '/things?a=1&b=%2F2')
    assert.equal(one(up.requests[0], 'X-Forwarded-User'), 'gen-user', 'authenticated as the key’s user, not anonymous')
    assert.equal(one(up.requests[0], 'X-Forwarded-Auth-Method'), 'apikey')
    assert.ok(!allValues(up.requests[0]).includes(GEN_KEY))
  })

  it('two access_token parameters or a different key in header and query → 400, nothing upstream', async () => {
    up.reset()
    assertError(await raw(px, { path: `/things?access_token=${GEN_KEY}&access_token=${GEN_KEY}` }), 400, 'ERR_AMBIGUOUS_CREDENTIAL')
    assertError(await raw(px, { path: '/things?access_token=another-key-abc', headers: [bearer(GEN_KEY)] }), 400, 'ERR_AMBIGUOUS_CREDENTIAL')
    assert.equal(up.requests.length, 0)
  })

  it('the access log line has the path without the query', () => {
    const lines = px.logs.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as { path: string })
    assert.ok(lines.some((l) => l.path === '/things'))
    for (const l of lines) assert.ok(!l.path.includes('?'))
  })
})

describe('security: qdrant profile api-key header', () => {
  let up: RecordingUpstream
  let px: TestProxy

  before(async () => {
    usedSecrets.add(Q_ADMIN).add(Q_READER)
    up = await startUpstream()
    px = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'qdrant',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${Q_ADMIN},${Q_READER}`,
        AUTHENTICATION_APIKEY_USERS: 'q-admin,q-reader',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'q-admin',
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'q-reader',
      },
    })
  })

  after(async () => {
    await px?.stop()
    await up?.close()
    assertNoSecretsInLogs(px.logs)
  })

  it('api-key authenticates and is stripped before forwarding', async () => {
    up.reset()
    const r = await raw(px, { method: 'PUT', path: '/collections/c1', body: '{}', headers: [['api-key', Q_ADMIN]] })
    assert.equal(r.status, 200)
    const rec = up.requests[0]
    assert.equal(one(rec, 'X-Forwarded-User'), 'q-admin')
    assert.deepEqual(received(rec, 'api-key'), [])
    assert.deepEqual(received(rec, 'Authorization'), [])
    assert.ok(!allValues(rec).includes(Q_ADMIN))
  })

  it('the reader’s api-key may read (POST …/points/search) but not write', async () => {
    up.reset()
    assert.equal((await raw(px, { method: 'POST', path: '/collections/c1/points/search', body: '{}', headers: [['api-key', Q_READER]] })).status, 200)
    assertError(await raw(px, { method: 'PUT', path: '/collections/c1/points', body: '{}', headers: [['api-key', Q_READER]] }), 403, 'ERR_FORBIDDEN')
    assert.equal(up.requests.length, 1)
  })

  it('a different key in Authorization and api-key → 400, nothing upstream; the same key in both is fine', async () => {
    up.reset()
    assertError(await raw(px, { path: '/collections', headers: [bearer(Q_READER), ['api-key', Q_ADMIN]] }), 400, 'ERR_AMBIGUOUS_CREDENTIAL')
    assertError(await raw(px, { method: 'DELETE', path: '/collections/c1', headers: [bearer(Q_ADMIN), ['api-key', Q_READER]] }), 400, 'ERR_AMBIGUOUS_CREDENTIAL')
    assert.equal(up.requests.length, 0)
    const same = await raw(px, { path: '/collections', headers: [bearer(Q_READER), ['api-key', Q_READER]] })
    assert.equal(same.status, 200)
    assert.equal(one(up.requests[0], 'X-Forwarded-User'), 'q-reader')
  })

  it('an invalid api-key → 401, nothing upstream', async () => {
    up.reset()
    assertError(await raw(px, { path: '/collections', headers: [['api-key', 'bogus-qdrant-key']] }), 401, 'ERR_INVALID_API_KEY')
    assert.equal(up.requests.length, 0)
  })
})
