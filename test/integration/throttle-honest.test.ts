/**
 * The failure throttle keeps throttling guesses without blocking honest clients that share the
 * guesser's address (a sidecar sees everyone as 127.0.0.1; an ingress without trustedProxies is
 * every client): a JWT whose signature verifies is never refused and, when expired, not
 * counted; an API key proven from the address before keeps working; only unproven credentials
 * get 429. Real sockets from chosen loopback addresses, a real issuer and a recording upstream;
 * every case checks the status and what the upstream saw. Also: the one-time warning about
 * X-Forwarded-For from a peer that is not a trusted proxy.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { h2request } from '../helpers/h2.ts'
import { oidcEnv, startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, waitReady, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const PROVEN = 'honest-proven-key-7c41d2e9'
const NEVER = 'honest-never-seen-key-3b8a55f0'
const now = (): number => Math.floor(Date.now() / 1000)

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  reason: string | undefined
}

/** A GET on a fresh connection from `from` (any 127.x address works on Linux loopback). */
function get(url: string, from: string, token?: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = { ...headers }
    if (token !== undefined) {
      usedSecrets.add(token)
      h.authorization = `Bearer ${token}`
    }
    const req = http.request(url, { agent: false, headers: h, localAddress: from }, (res) => {
      let t = ''
      res.on('data', (c: Buffer) => (t += c.toString('utf8')))
      res.on('end', () => {
        let reason: string | undefined
        try {
          reason = (JSON.parse(t) as { reason?: string }).reason
        } catch {
          reason = undefined
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, reason })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

function env(issuer: TestIssuer, up: { readonly url: string }): Record<string, string> {
  return oidcEnv(issuer, up, {
    GATEHOUSE_TLS_ENABLED: 'false',
    AUTHENTICATION_APIKEY_ENABLED: 'true',
    AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${PROVEN},${NEVER}`,
    AUTHENTICATION_APIKEY_USERS: 'alice,bob',
  })
}

describe('a blocked address still serves its honest clients; only unproven credentials get 429', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let gh: TestProxy

  before(async () => {
    issuer = await startIssuer()
    up = await startUpstream()
    // Default throttle: 20 failures within 60 s block for 60 s.
    gh = await startProxy({ env: env(issuer, up), yaml: 'authentication:\n  oidc:\n    jwks:\n      cooldown: 200ms\n' })
    await waitReady(gh)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('after 20 bad keys: valid JWT 200, expired JWT 401, forged JWT 429, proven key 200, never-seen key 429, bad key 429', async () => {
    const A = '127.0.0.21'
    up.reset()
    assert.equal((await get(`${gh.url}/before`, A, PROVEN)).status, 200, 'the key works before the block')
    for (let i = 0; i < 20; i++) assert.equal((await get(`${gh.url}/guess`, A, `bad-guess-${i}-q8w7e6r5`)).status, 401)
    const bad = await get(`${gh.url}/guess`, A, 'bad-guess-20-q8w7e6r5')
    assert.equal(bad.status, 429, 'the address is blocked')
    assert.equal(bad.reason, 'ERR_TOO_MANY_FAILURES')
    assert.match(String(bad.headers['retry-after']), /^[1-9][0-9]*$/)

    const valid = await get(`${gh.url}/jwt-valid`, A, await issuer.sign({ email: 'ada@example.com' }))
    assert.equal(valid.status, 200, 'a JWT whose signature verifies is never refused by the throttle')

    const expired = await get(`${gh.url}/jwt-expired`, A, await issuer.sign({ email: 'ada@example.com', iat: now() - 1000, exp: now() - 600 }))
    assert.equal(expired.status, 401, 'an expired token with a good signature is 401, not 429')
    assert.equal(expired.reason, 'ERR_TOKEN_EXPIRED')

    const forged = await get(`${gh.url}/jwt-forged`, A, issuer.attacks.corruptSignature(await issuer.sign({ email: 'ada@example.com' })))
    assert.equal(forged.status, 429, 'a forged signature is a guess')
    assert.equal(forged.reason, 'ERR_TOO_MANY_FAILURES')

    assert.equal((await get(`${gh.url}/proven`, A, PROVEN)).status, 200, 'a key proven from this address keeps working')
    assert.equal((await get(`${gh.url}/never`, A, NEVER)).status, 429, 'a valid key never seen from here is not even looked up')
    assert.equal((await get(`${gh.url}/bad-again`, A, 'bad-guess-21-q8w7e6r5')).status, 429)

    assert.deepEqual(
      up.requests.map((r) => r.url),
      ['/before', '/jwt-valid', '/proven'],
      'the upstream saw exactly the allowed requests',
    )
  })

  it('a blocked address checks JWTs offline: an unknown kid or an unknown issuer is 429 without fetching the JWKS', async () => {
    const A = '127.0.0.23'
    for (let i = 0; i < 20; i++) assert.equal((await get(`${gh.url}/guess`, A, `bad-guess-b${i}-z1x2c3v4`)).status, 401)
    up.reset()
    issuer.resetHits()
    await new Promise((r) => setTimeout(r, 250)) // past the refetch cooldown, so only the blocked path can explain no fetch
    const unknownKid = await get(`${gh.url}/kid`, A, await issuer.attacks.signWithUnpublishedKey({ email: 'e@example.com' }))
    assert.equal(unknownKid.status, 429)
    const unknownIss = await get(`${gh.url}/iss`, A, await issuer.sign({ email: 'e@example.com', iss: 'https://elsewhere.example' }))
    assert.equal(unknownIss.status, 429)
    assert.equal(issuer.hits.jwks + issuer.hits.discovery, 0, 'no key fetch on behalf of a blocked address')
    assert.equal(up.requests.length, 0)
  })

  it('a JWT with a good signature but refused claims is not counted: 19 bad keys and 5 expired tokens do not block', async () => {
    const B = '127.0.0.22'
    up.reset()
    for (let i = 0; i < 19; i++) assert.equal((await get(`${gh.url}/guess`, B, `bad-guess-c${i}-p0o9i8u7`)).status, 401)
    for (let i = 0; i < 5; i++) {
      const r = await get(`${gh.url}/expired`, B, await issuer.sign({ email: `x${i}@example.com`, iat: now() - 1000, exp: now() - 600 }))
      assert.equal(r.status, 401)
      assert.equal(r.reason, 'ERR_TOKEN_EXPIRED')
    }
    const wrongAud = await get(`${gh.url}/aud`, B, await issuer.sign({ email: 'y@example.com', aud: 'another-client' }))
    assert.equal(wrongAud.status, 401, 'a signed token for another audience is 401 and not a guess either')
    assert.equal((await get(`${gh.url}/never-seen`, B, NEVER)).status, 200, 'not blocked: only the 19 bad keys counted')
    // The 20th guess blocks.
    assert.equal((await get(`${gh.url}/guess`, B, 'bad-guess-c19-p0o9i8u7')).status, 401)
    assert.equal((await get(`${gh.url}/guess`, B, 'bad-guess-c20-p0o9i8u7')).status, 429)
    assert.deepEqual(
      up.requests.map((r) => r.url),
      ['/never-seen'],
    )
  })

  it('the same rules hold over HTTP/2 (shared stage 5)', async () => {
    const C = '127.0.0.24'
    const port = Number(new URL(gh.url).port)
    assert.equal((await get(`${gh.url}/h2-before`, C, PROVEN)).status, 200)
    for (let i = 0; i < 20; i++) assert.equal((await get(`${gh.url}/guess`, C, `bad-guess-d${i}-m5n4b3v2`)).status, 401)
    up.reset()
    const session = http2.connect(gh.url, { createConnection: () => net.connect({ host: '127.0.0.1', port, localAddress: C }) })
    session.on('error', () => {})
    try {
      const jwt = await issuer.sign({ email: 'h2@example.com' })
      usedSecrets.add(jwt)
      const ask = async (path: string, token: string): Promise<number> => (await h2request(session, { ':path': path, authorization: `Bearer ${token}` })).status
      assert.equal(await ask('/h2-jwt', jwt), 200)
      assert.equal(await ask('/h2-forged', issuer.attacks.corruptSignature(jwt)), 429)
      assert.equal(await ask('/h2-proven', PROVEN), 200)
      assert.equal(await ask('/h2-never', NEVER), 429)
    } finally {
      session.close()
    }
    assert.deepEqual(
      up.requests.map((r) => r.url),
      ['/h2-jwt', '/h2-proven'],
    )
  })
})

describe('the same rules for WebSocket upgrades', () => {
  let issuer: TestIssuer
  let server: http.Server
  let wss: WebSocketServer
  const handshakes: string[] = []
  let gh: TestProxy

  before(async () => {
    issuer = await startIssuer()
    server = http.createServer((_req, res) => res.end('plain'))
    wss = new WebSocketServer({ server })
    wss.on('connection', (ws, req) => {
      handshakes.push(req.url ?? '')
      ws.close()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as net.AddressInfo).port
    gh = await startProxy({ env: env(issuer, { url: `http://127.0.0.1:${port}` }) })
    await waitReady(gh)
  })
  after(async () => {
    await gh.stop()
    wss.close()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
    await issuer.close()
    assertNoSecretsInLogs(gh.logs)
  })

  /** Try an upgrade from `from`: 101 when the tunnel opened, else the refusal's status. */
  function upgrade(path: string, from: string, token: string): Promise<number> {
    usedSecrets.add(token)
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${gh.url.replace(/^http/, 'ws')}${path}`, { headers: { authorization: `Bearer ${token}` }, localAddress: from })
      ws.on('open', () => {
        ws.terminate()
        resolve(101)
      })
      ws.on('unexpected-response', (_req, res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      ws.on('error', reject)
    })
  }

  it('blocked address: valid JWT and proven key open the tunnel; forged JWT and unproven key get 429', async () => {
    const D = '127.0.0.25'
    assert.equal(await upgrade('/ws-before', D, PROVEN), 101)
    for (let i = 0; i < 20; i++) assert.equal((await get(`${gh.url}/guess`, D, `bad-guess-e${i}-l1k2j3h4`)).status, 401)
    handshakes.length = 0
    const jwt = await issuer.sign({ email: 'ws@example.com' })
    assert.equal(await upgrade('/ws-jwt', D, jwt), 101)
    assert.equal(await upgrade('/ws-forged', D, issuer.attacks.corruptSignature(jwt)), 429)
    assert.equal(await upgrade('/ws-proven', D, PROVEN), 101)
    assert.equal(await upgrade('/ws-never', D, NEVER), 429)
    assert.deepEqual(handshakes, ['/ws-jwt', '/ws-proven'], 'the upstream saw exactly the allowed handshakes')
  })
})

describe('X-Forwarded-For from a peer that is not a trusted proxy: one warning', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let untrusted: TestProxy
  let trusted: TestProxy
  const warnings = (gh: TestProxy): string[] => gh.logs.filter((l) => l.includes('not in trustedProxies'))

  before(async () => {
    issuer = await startIssuer()
    up = await startUpstream()
    untrusted = await startProxy({ env: env(issuer, up) })
    trusted = await startProxy({ env: env(issuer, up), yaml: 'trustedProxies: [127.0.0.1]\n' })
  })
  after(async () => {
    await untrusted.stop()
    await trusted.stop()
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs([...untrusted.logs, ...trusted.logs])
  })

  it('is logged once, names the peer and the fix, and never the credential', async () => {
    up.reset()
    assert.equal((await get(`${untrusted.url}/a`, '127.0.0.1', PROVEN)).status, 200)
    assert.equal(warnings(untrusted).length, 0, 'no X-Forwarded-For yet, no warning')
    for (let i = 0; i < 3; i++) {
      assert.equal((await get(`${untrusted.url}/b`, '127.0.0.1', PROVEN, { 'x-forwarded-for': `198.51.100.${i + 1}` })).status, 200)
    }
    assert.equal((await get(`${untrusted.url}/c`, '127.0.0.1', 'bad-key-w4r5t6y7', { 'x-forwarded-for': '198.51.100.9' })).status, 401)
    const w = warnings(untrusted)
    assert.equal(w.length, 1, 'exactly once')
    const line = JSON.parse(w[0] as string) as { level: string; peer: string; msg: string }
    assert.equal(line.level, 'warn')
    assert.equal(line.peer, '127.0.0.1')
    assert.match(line.msg, /trustedProxies/)
    assert.match(line.msg, /every client behind that proxy/)
    assert.equal(up.requests.length, 4)
  })

  it('is not logged when the peer is a trusted proxy', async () => {
    assert.equal((await get(`${trusted.url}/a`, '127.0.0.1', PROVEN, { 'x-forwarded-for': '198.51.100.1' })).status, 200)
    assert.equal(warnings(trusted).length, 0)
  })
})
