/**
 * Identity-like headers other authenticating proxies inject (oauth2-proxy, Authelia, Grafana's
 * auth proxy, Kubernetes, Kong…) never reach the upstream from a client, in any spelling (case,
 * `_` for `-`, `.`), over HTTP/1.1, HTTP/2, as gRPC metadata and on a WebSocket handshake
 * (`identityHeaders.strip`, docs/security.md). Each test asserts the answer and what the real
 * upstream received: none of the spoofed values, gatehouse's own identity headers, and an
 * unrelated header untouched (the positive control that the raw list did arrive).
 */
import assert from 'node:assert/strict'
import type http from 'node:http'
import https from 'node:https'
import { after, before, describe, it } from 'node:test'
import { DEFAULT_IDENTITY_STRIP } from '../../src/http/headers.ts'
import { bearer as grpcBearer, echoClient, startGrpcServer, unary, type TestGrpcServer } from '../helpers/grpc.ts'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startRefusingUpgradeUpstream, upgradeStatus, type Handshake, type RefusingUpgradeUpstream } from '../helpers/upgrade.ts'
import { startUpstream, type Recorded, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'identity-headers-key-51c9e2'

/** The names of issue 13, each with the value marker the upstream must never see. */
const NAMES = [
  'X-Remote-User',
  'Remote-User',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
  'X-Authenticated-User',
  'X-WEBAUTH-USER',
  'X-Forwarded-Preferred-Username',
  'X-Forwarded-Access-Token',
]

/** Every spelling a lenient upstream might fold into the same name. */
function spellings(name: string): string[] {
  const lower = name.toLowerCase()
  return [name, lower, name.toUpperCase(), name.replace(/-/g, '_'), lower.replace(/-/g, '.'), name.replace(/-/g, (_, i: number) => (i % 2 === 0 ? '_' : '.'))]
}

/** [name, value] pairs: every spelling of every name, each with its own marker value. */
function spoofPairs(names: readonly string[] = NAMES): [string, string][] {
  const out: [string, string][] = []
  let n = 0
  for (const name of names) for (const s of spellings(name)) out.push([s, `spoof-marker-${n++}`])
  return out
}

const canon = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '')

/** Every header value the upstream received, joined (to look for the markers). */
const allValues = (rec: Recorded): string => rec.rawHeaders.filter((_, i) => i % 2 === 1).join('\n')

/** Values the upstream received under any spelling of `name`. */
function received(rec: Recorded, name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < rec.rawHeaders.length; i += 2) if (canon(rec.rawHeaders[i] as string) === canon(name)) out.push(rec.rawHeaders[i + 1] as string)
  return out
}

/** HTTP/1.1 request with a raw header list (sent in this order and spelling, nothing normalized). */
function raw(p: TestProxy, path: string, headers: [string, string][]): Promise<{ status: number; text: string }> {
  const u = new URL(p.url)
  const flat: string[] = ['Host', u.host]
  for (const [k, v] of headers) flat.push(k, v)
  return new Promise((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, path, headers: flat as unknown as http.OutgoingHttpHeaders, agent: false, ca: p.ca }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The upstream got gatehouse's own identity for the key's user, and nothing the client claimed. */
function assertClean(rec: Recorded, spoofs: readonly [string, string][]): void {
  const values = allValues(rec)
  for (const [name, v] of spoofs) assert.ok(!values.includes(v), `${name}: ${v} reached the upstream`)
  for (const name of NAMES) assert.deepEqual(received(rec, name), [], `${name} reached the upstream`)
  assert.deepEqual(received(rec, 'X-Forwarded-User'), ['id-user'])
  assert.deepEqual(received(rec, 'X-Forwarded-Auth-Method'), ['apikey'])
  assert.equal(received(rec, 'X-Forwarded-For').length, 1)
  assert.equal(received(rec, 'X-Request-Id').length, 1)
  assert.deepEqual(received(rec, 'X-Harmless'), ['kept-marker'], 'an unrelated header passes untouched')
}

const KEY_ENV = { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'id-user' }

describe('identity headers: the default strip list', () => {
  let up: RecordingUpstream
  let grpcUp: TestGrpcServer
  let p: TestProxy

  before(async () => {
    usedSecrets.add(KEY)
    up = await startUpstream()
    grpcUp = await startGrpcServer()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url, GATEHOUSE_UPSTREAM_GRPC_URL: grpcUp.url } })
  })
  after(async () => {
    await p.stop()
    await up.close()
    await grpcUp.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('HTTP/1.1: every name in every spelling → 200, the upstream saw none of them and saw gatehouse’s own', async () => {
    up.reset()
    const spoofs = spoofPairs()
    const r = await raw(p, '/v1/things', [['Authorization', `Bearer ${KEY}`], ...spoofs, ['X-Harmless', 'kept-marker']])
    assert.equal(r.status, 200, r.text)
    assert.equal(up.requests.length, 1)
    assertClean(up.requests[0] as Recorded, spoofs)
  })

  it('HTTP/1.1: the families, not just the names (X-Remote-Group, Remote-Groups, X-Auth-Request-Preferred-Username, X-Webauth-Role, X-Pomerium-Claim-Email, OIDC_CLAIM_sub, X-Consumer-Username, X-User, X-Email)', async () => {
    up.reset()
    const family = ['X-Remote-Group', 'X-Remote-Extra-Scopes', 'Remote-Groups', 'Remote-Email', 'X-Auth-Request-Preferred-Username', 'X-Auth-Request-Access-Token', 'X-Authenticated-Groups', 'X-Webauth-Role', 'X-Forwarded-User-Id', 'X-Forwarded-Email', 'X-Forwarded-Groups', 'Gap-Auth', 'X-Pomerium-Claim-Email', 'X-Pomerium-Jwt-Assertion', 'OIDC_CLAIM_sub', 'X-Consumer-Username', 'X-User', 'X-Email', 'X-Goog-Authenticated-User-Email', 'Cf-Access-Authenticated-User-Email', 'X-Amzn-Oidc-Identity', 'X-MS-CLIENT-PRINCIPAL-NAME', 'X-Jwt-Payload']
    const spoofs = family.map((n, i): [string, string] => [n, `family-marker-${i}`])
    const r = await raw(p, '/v1/things', [['Authorization', `Bearer ${KEY}`], ...spoofs, ['X-Harmless', 'kept-marker'], ['X-User-Agent', 'ua-marker']])
    assert.equal(r.status, 200, r.text)
    const rec = up.requests[0] as Recorded
    assertClean(rec, spoofs)
    for (const n of family) assert.deepEqual(received(rec, n).filter((v) => v.startsWith('family-marker')), [], `${n} reached the upstream`)
    assert.deepEqual(received(rec, 'X-User-Agent'), ['ua-marker'], 'X-User-Agent is not an identity header (no X-User* prefix)')
  })

  it('HTTP/2: every name in every spelling → 200, the upstream saw none of them', async () => {
    up.reset()
    // HTTP/2 field names are lower case on the wire (RFC 9113 §8.2.1); `_` and `.` stay.
    const byName = new Map(spoofPairs().map(([n, v]) => [n.toLowerCase(), v] as const).reverse())
    const spoofs = [...byName]
    assert.ok(spoofs.length >= NAMES.length * 3, 'several spellings per name survive lower-casing')
    const s = await h2connect(p.url, p.ca)
    try {
      const r = await h2request(s, { ':path': '/v1/things', authorization: `Bearer ${KEY}`, 'x-harmless': 'kept-marker', ...Object.fromEntries(spoofs) })
      assert.equal(r.status, 200, r.text)
    } finally {
      await h2close(s)
    }
    assert.equal(up.requests.length, 1)
    assertClean(up.requests[0] as Recorded, spoofs)
  })

  it('gRPC: the names as metadata never reach the gRPC server; gatehouse’s identity does', async () => {
    grpcUp.reset()
    // gRPC metadata keys are lower case (grpc-js refuses others); `_` and `.` are allowed.
    const spoofs = [...new Map(spoofPairs().map(([n, v]) => [n.toLowerCase(), v] as const).reverse())]
    const client = echoClient(p.url, p.ca)
    try {
      const md = grpcBearer(KEY, { ...Object.fromEntries(spoofs), 'x-harmless': 'kept-marker' })
      const r = await unary(client, 'Unary', Buffer.from('hi'), md)
      assert.equal(r.code, 0, r.details)
    } finally {
      client.close()
    }
    assert.equal(grpcUp.calls.length, 1)
    const md = grpcUp.calls[0]?.metadata ?? {}
    const all = JSON.stringify(md)
    for (const [n, v] of spoofs) assert.ok(!all.includes(v), `${n}: ${v} reached the gRPC server`)
    for (const k of Object.keys(md)) assert.ok(!NAMES.map(canon).includes(canon(k)), `${k} reached the gRPC server`)
    assert.equal(md['x-forwarded-user'], 'id-user')
    assert.equal(md['x-harmless'], 'kept-marker')
  })
})

describe('identity headers: a WebSocket handshake', () => {
  let p: TestProxy
  let server: RefusingUpgradeUpstream

  before(async () => {
    // An upstream that records the handshake's raw headers and refuses it (no tunnel is needed
    // to see what reached it).
    server = await startRefusingUpgradeUpstream()
    p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: server.url } })
  })
  after(async () => {
    await p.stop()
    await server.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('every name in every spelling on the upgrade request → the upstream’s handshake has none of them', async () => {
    const spoofs = spoofPairs()
    const u = new URL(p.url)
    const flat = ['Host', u.host, 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Version', '13', 'Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==', 'Authorization', `Bearer ${KEY}`, 'X-Harmless', 'kept-marker']
    for (const [k, v] of spoofs) flat.push(k, v)
    const status = await upgradeStatus(p, '/ws', flat)
    assert.equal(status, 403, 'the upstream’s refusal is relayed')
    assert.equal(server.handshakes.length, 1)
    const rawHeaders = (server.handshakes[0] as Handshake).rawHeaders
    const rec: Recorded = { method: 'GET', url: '/ws', headers: {}, rawHeaders, bodyBytes: 0, complete: true, aborted: false }
    assertClean(rec, spoofs)
  })
})

describe('identity headers: a configured list', () => {
  let up: RecordingUpstream
  let extra: TestProxy
  let replaced: TestProxy

  before(async () => {
    up = await startUpstream()
    const list = [...DEFAULT_IDENTITY_STRIP, 'X-Tenant-Claim', 'x-acme-identity-*'].map((e) => `    - "${e}"`).join('\n')
    extra = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: `identityHeaders:\n  strip:\n${list}\n` })
    replaced = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: 'identityHeaders:\n  strip: ["x-acme-identity-*"]\n' })
  })
  after(async () => {
    await extra.stop()
    await replaced.stop()
    await up.close()
    assertNoSecretsInLogs([...extra.logs, ...replaced.logs])
  })

  it('an added exact entry and an added prefix are stripped in every spelling; the defaults still apply; an unrelated header passes', async () => {
    up.reset()
    const spoofs = [...spoofPairs(), ...spoofPairs(['X-Tenant-Claim', 'X-Acme-Identity-Roles'])]
    const r = await raw(extra, '/v1/things', [['Authorization', `Bearer ${KEY}`], ...spoofs, ['X-Harmless', 'kept-marker'], ['X-Tenant', 'tenant-kept']])
    assert.equal(r.status, 200, r.text)
    const rec = up.requests[0] as Recorded
    assertClean(rec, spoofs)
    assert.deepEqual(received(rec, 'X-Tenant-Claim'), [])
    assert.deepEqual(received(rec, 'X-Acme-Identity-Roles'), [])
    assert.deepEqual(received(rec, 'X-Tenant'), ['tenant-kept'], 'X-Tenant is not X-Tenant-Claim')
  })

  it('a list that replaces the defaults: its entries are stripped, names it left out pass, gatehouse’s own names are always stripped', async () => {
    up.reset()
    const r = await raw(replaced, '/v1/things', [
      ['Authorization', `Bearer ${KEY}`],
      ['X-Acme-Identity', 'acme-marker'],
      ['X-Remote-User', 'remote-kept'],
      ['X_Forwarded_User', 'own-name-marker'],
      ['X-Harmless', 'kept-marker'],
    ])
    assert.equal(r.status, 200, r.text)
    const rec = up.requests[0] as Recorded
    assert.deepEqual(received(rec, 'X-Acme-Identity'), [])
    assert.deepEqual(received(rec, 'X-Remote-User'), ['remote-kept'], 'the operator took x-remote-* off the list')
    assert.deepEqual(received(rec, 'X-Forwarded-User'), ['id-user'])
    assert.deepEqual(received(rec, 'X-Harmless'), ['kept-marker'])
  })

  it('a list entry that would strip the framing, Host or Authorization is a configuration problem', async () => {
    for (const bad of ['content-*', '*', 'Authorization', 'x-foo*bar', 'host']) {
      await assert.rejects(startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: `identityHeaders:\n  strip: ["${bad}"]\n` }), /identityHeaders\.strip\[0\]/, bad)
    }
  })
})
