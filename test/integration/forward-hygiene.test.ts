/**
 * `TRACE` and `TRACK` are never forwarded (cross-site tracing: the upstream would echo the
 * request, credentials and injected identity included, back to the caller): 405 with the JSON
 * error and no `Allow`, before authentication, over HTTP/1.1, HTTP/2 and on an upgrade request.
 * Every test checks the answer and that the recording upstream saw nothing.
 */
import assert from 'node:assert/strict'
import type http from 'node:http'
import https from 'node:https'
import { after, before, describe, it } from 'node:test'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { tlsWire } from '../helpers/rawClient.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'hygiene-key-0c4f9b2e'

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
}

function send(p: TestProxy, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  const u = new URL(p.url)
  return new Promise((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, method, path, headers, agent: false, ca: p.ca }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** The JSON error of SPEC §9 with reason ERR_METHOD_NOT_FORWARDED, and no Allow header. */
function assertRefused(r: { status: number; headers: Record<string, unknown>; text: string }): void {
  assert.equal(r.status, 405, r.text)
  assert.equal(r.headers['content-type'], 'application/json')
  assert.equal(r.headers['cache-control'], 'no-store')
  assert.equal(r.headers.allow, undefined, 'gatehouse does not guess the upstream’s methods')
  const b = JSON.parse(r.text) as { code: number; reason: string; message: string; requestId: string }
  assert.equal(b.code, 405)
  assert.equal(b.reason, 'ERR_METHOD_NOT_FORWARDED')
  assert.match(b.message, /another method/)
  assert.equal(r.headers['x-request-id'], b.requestId)
}

describe('TRACE and TRACK are never forwarded', () => {
  let up: RecordingUpstream
  let p: TestProxy

  before(async () => {
    usedSecrets.add(KEY)
    up = await startUpstream()
    p = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: up.url, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'hygiene-user' } })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('HTTP/1.1 TRACE: 405 without a credential, with a valid one and with a wrong one (before authentication); upstream saw nothing', async () => {
    up.reset()
    assertRefused(await send(p, 'TRACE', '/v1/things'))
    assertRefused(await send(p, 'TRACE', '/v1/things', { authorization: `Bearer ${KEY}`, cookie: 'session=hygiene-cookie-secret' }))
    assertRefused(await send(p, 'TRACE', '/v1/things', { authorization: 'Bearer hygiene-wrong-key-123456' }))
    assert.equal(up.requests.length, 0)
    // positive control: the same request with GET reaches the upstream
    assert.equal((await send(p, 'GET', '/v1/things', { authorization: `Bearer ${KEY}` })).status, 200)
    assert.equal(up.requests.length, 1)
  })

  it('HTTP/1.1 TRACK: llhttp does not know the method, so the parser answers 400 (JSON) first; upstream saw nothing', async () => {
    up.reset()
    const r = await send(p, 'TRACK', '/v1/things', { authorization: `Bearer ${KEY}` })
    assert.equal(r.status, 400, r.text)
    assert.equal(r.headers['content-type'], 'application/json')
    assert.equal(up.requests.length, 0)
  })

  it('a TRACE with a body: 405 and the connection is closed (the body is never read or forwarded)', async () => {
    up.reset()
    const u = new URL(p.url)
    const raw = await tlsWire(p, `TRACE /v1/things HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 5\r\n\r\nhello`, { servername: 'localhost' })
    assert.match(raw, /^HTTP\/1\.1 405 /)
    assert.match(raw, /"reason":"ERR_METHOD_NOT_FORWARDED"/)
    assert.doesNotMatch(raw, /\r\nallow:/i)
    assert.equal(up.requests.length, 0)
  })

  it('HTTP/2 TRACE and TRACK: 405, upstream saw nothing', async () => {
    up.reset()
    const s = await h2connect(p.url, p.ca)
    try {
      for (const method of ['TRACE', 'TRACK']) {
        const r = await h2request(s, { ':method': method, ':path': '/v1/things', authorization: `Bearer ${KEY}` })
        assertRefused({ status: r.status, headers: r.headers as Record<string, unknown>, text: r.text })
      }
    } finally {
      await h2close(s)
    }
    assert.equal(up.requests.length, 0)
  })

  it('a TRACE that asks for a WebSocket upgrade (or another upgrade): 405, upstream saw nothing', async () => {
    up.reset()
    for (const upgrade of ['websocket', 'h2c']) {
      const r = await send(p, 'TRACE', '/ws', { connection: 'Upgrade', upgrade, 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', authorization: `Bearer ${KEY}` })
      assertRefused(r)
    }
    assert.equal(up.requests.length, 0)
  })

  it('the access line records the refusal without the credential or the cookie', () => {
    const lines = p.logs.filter((l) => l.includes('ERR_METHOD_NOT_FORWARDED'))
    assert.ok(lines.length >= 5, `access lines for the refusals: ${lines.length}`)
    for (const l of p.logs) assert.ok(!l.includes('hygiene-cookie-secret') && !l.includes('hygiene-wrong-key-123456'), l.slice(0, 200))
  })
})
