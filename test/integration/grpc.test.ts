/**
 * gRPC through gatehouse (docs/http2.md): a real @grpc/grpc-js client calling a real grpc-js
 * server through the data listener (TLS, ALPN h2) and through the gRPC-only listener. Unary,
 * server-streaming and bidi streaming with an API key and with an OIDC token; failures as gRPC
 * status in trailers-only responses (UNAUTHENTICATED 16, PERMISSION_DENIED 7) with the server
 * seeing nothing; identity metadata injected, client-sent copies stripped; deadlines and cancels
 * propagate; no grpcUrl → UNIMPLEMENTED; upstream down → UNAVAILABLE.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { bearer, chat, count, echoClient, next, startGrpcServer, unary, type TestGrpcServer } from '../helpers/grpc.ts'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { closedPort } from '../helpers/upstream.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'

const ADMIN_KEY = 'grpc-admin-key-3b7e51'
const READER_KEY = 'grpc-reader-key-8c2d90'

describe('gRPC through the data listener (TLS, ALPN h2) and the gRPC listener', () => {
  let srv: TestGrpcServer
  let issuer: TestIssuer
  let p: TestProxy
  let client: grpc.Client
  let jwt: string

  before(async () => {
    srv = await startGrpcServer()
    issuer = await startIssuer({ audience: 'gatehouse' })
    p = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_GRPC_URL: srv.url,
        GATEHOUSE_GRPC_ENABLED: 'true',
        GATEHOUSE_GRPC_PORT: '0',
        GATEHOUSE_GRPC_ADDRESS: '127.0.0.1',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${ADMIN_KEY},${READER_KEY}`,
        AUTHENTICATION_APIKEY_USERS: 'grpc-admin,grpc-reader',
        AUTHENTICATION_OIDC_ENABLED: 'true',
        AUTHENTICATION_OIDC_ISSUER: issuer.url,
        AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
        AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'grpc-admin,oidc-user',
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'grpc-reader',
      },
    })
    jwt = await issuer.sign({ sub: 'oidc-user' })
    usedSecrets.add(jwt)
    client = echoClient(p.url, p.ca)
  })
  after(async () => {
    client.close()
    await p.stop()
    await srv.close()
    await issuer.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('unary with an API key: the server sees the identity metadata, not the key, and not a client-sent identity', async () => {
    srv.reset()
    const r = await unary(client, 'Unary', Buffer.from('hi'), bearer(ADMIN_KEY, { 'x-forwarded-user': 'spoofed', 'x-request-id': 'grpc-req-1' }))
    assert.equal(r.code, 0, r.details)
    assert.equal(r.reply?.toString(), 'echo:hi')
    const seen = srv.calls[0]
    assert.ok(seen !== undefined)
    assert.equal(seen.path, '/test.Echo/Unary')
    assert.equal(seen.metadata['x-forwarded-user'], 'grpc-admin')
    assert.equal(seen.metadata['x-forwarded-auth-method'], 'apikey')
    assert.equal(seen.metadata['x-request-id'], 'grpc-req-1')
    assert.equal(seen.metadata.authorization, undefined, 'the key stays at gatehouse')
    assert.equal(r.headers?.get('x-echo-user')[0], 'grpc-admin')
    assert.equal(r.headers?.get('x-request-id')[0], 'grpc-req-1')
  })

  it('bidi streaming with an API key: each reply arrives before the next message is sent (no buffering)', async () => {
    srv.reset()
    const call = chat(client, bearer(ADMIN_KEY))
    for (const word of ['one', 'two', 'three']) {
      call.write(Buffer.from(word))
      assert.equal((await next(call)).toString(), `re:${word}`)
    }
    const ended = new Promise<void>((r) => call.on('status', () => r()))
    call.end()
    await ended
    assert.equal(srv.calls[0]?.metadata['x-forwarded-user'], 'grpc-admin')
  })

  it('server streaming relays every message and the OK status', async () => {
    const s = count(client, 50, bearer(ADMIN_KEY))
    const got: string[] = []
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      s.on('data', (d: Buffer) => got.push(d.toString()))
      s.on('status', resolve)
      s.on('error', () => {})
    })
    assert.equal(status.code, 0)
    assert.equal(got.length, 50)
    assert.equal(got.at(-1), '50')
  })

  it('unary and bidi with an OIDC token', async () => {
    srv.reset()
    const r = await unary(client, 'Unary', Buffer.from('tok'), bearer(jwt))
    assert.equal(r.code, 0, r.details)
    const call = chat(client, bearer(jwt))
    call.write(Buffer.from('x'))
    assert.equal((await next(call)).toString(), 're:x')
    call.end()
    assert.deepEqual(
      srv.calls.map((c) => [c.path, c.metadata['x-forwarded-user'], c.metadata['x-forwarded-auth-method']]),
      [
        ['/test.Echo/Unary', 'oidc-user', 'oidc'],
        ['/test.Echo/Chat', 'oidc-user', 'oidc'],
      ],
    )
  })

  it('attack: no credential → UNAUTHENTICATED (16), trailers-only; the server sees nothing', async () => {
    srv.reset()
    const r = await unary(client, 'Unary', Buffer.from('x'), bearer(undefined))
    assert.equal(r.code, grpc.status.UNAUTHENTICATED)
    assert.match(r.details, /anonymous access not enabled/)
    const call = chat(client, bearer(undefined))
    const err = await next(call).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    )
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED)
    assert.equal(srv.calls.length, 0)
  })

  it('attack: a wrong key, a forged (alg none) JWT → UNAUTHENTICATED (16); the server sees nothing', async () => {
    srv.reset()
    const wrong = await unary(client, 'Unary', Buffer.from('x'), bearer('not-a-valid-key-123'))
    assert.equal(wrong.code, grpc.status.UNAUTHENTICATED, wrong.details)
    const forged = await unary(client, 'Unary', Buffer.from('x'), bearer(issuer.attacks.unsignedAlgNone({ sub: 'grpc-admin' })))
    assert.equal(forged.code, grpc.status.UNAUTHENTICATED, forged.details)
    assert.equal(srv.calls.length, 0)
  })

  it('attack: a read-only user calling a write method (generic profile: every RPC but health is a write) → PERMISSION_DENIED (7); the server sees nothing', async () => {
    srv.reset()
    const r = await unary(client, 'Unary', Buffer.from('x'), bearer(READER_KEY))
    assert.equal(r.code, grpc.status.PERMISSION_DENIED)
    const call = chat(client, bearer(READER_KEY))
    const err = await next(call).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    )
    assert.equal(err?.code, grpc.status.PERMISSION_DENIED)
    assert.equal(srv.calls.length, 0)
  })

  it('grpc.health.v1.Health/Check is public: it reaches the server without a credential, as anonymous', async () => {
    srv.reset()
    const r = await unary(client, 'Check', Buffer.alloc(0), bearer(undefined))
    assert.equal(r.code, 0, r.details)
    assert.equal(srv.calls[0]?.path, '/grpc.health.v1.Health/Check')
    assert.equal(srv.calls[0]?.metadata['x-forwarded-auth-method'], 'anonymous')
  })

  it('a deadline passes upstream as grpc-timeout and cancels the server call when it expires', async () => {
    srv.reset()
    const deadline = Date.now() + 400
    const r = await unary(client, 'Hang', Buffer.from('x'), bearer(ADMIN_KEY), { deadline })
    assert.equal(r.code, grpc.status.DEADLINE_EXCEEDED)
    // The server derives its deadline from the grpc-timeout header gatehouse passed on.
    const seen = srv.calls[0]?.deadline ?? Infinity
    assert.ok(Number.isFinite(seen) && Math.abs(seen - deadline) < 300, `server deadline ${seen} vs ${deadline}`)
    for (let i = 0; i < 40 && srv.cancelled.length === 0; i++) await new Promise((res) => setTimeout(res, 25))
    assert.deepEqual(srv.cancelled, ['/test.Echo/Hang'])
  })

  it('a client cancel (RST_STREAM) of a bidi call cancels the upstream call', async () => {
    srv.reset()
    const call = chat(client, bearer(ADMIN_KEY))
    call.on('error', () => {})
    call.write(Buffer.from('a'))
    await next(call)
    call.cancel()
    for (let i = 0; i < 40 && srv.cancelled.length === 0; i++) await new Promise((res) => setTimeout(res, 25))
    assert.deepEqual(srv.cancelled, ['/test.Echo/Chat'], JSON.stringify(srv.calls.map((c) => c.path)))
  })

  it('one access line per RPC with the method path, user and gRPC status', async () => {
    srv.reset()
    await unary(client, 'Unary', Buffer.from('x'), bearer(ADMIN_KEY, { 'x-request-id': 'grpc-log-1' }))
    await unary(client, 'Unary', Buffer.from('x'), bearer(READER_KEY, { 'x-request-id': 'grpc-log-2' }))
    await new Promise((r) => setTimeout(r, 50))
    const lines = p.logs.filter((l) => l.includes('"grpc-log-')).map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.equal(lines.length, 2)
    // The client address the throttle keys on, as on HTTP/1.1 and HTTP/2 access lines.
    assert.deepEqual(lines.map((l) => l.client), ['127.0.0.1', '127.0.0.1'])
    assert.deepEqual(
      lines.map((l) => [l.method, l.path, l.user, l.status, l.reason]),
      [
        ['GRPC', '/test.Echo/Unary', 'grpc-admin', 0, undefined],
        ['GRPC', '/test.Echo/Unary', 'grpc-reader', 7, 'ERR_FORBIDDEN'],
      ],
    )
  })

  it('the gRPC-only listener serves the same calls with the same rules; a non-gRPC request there gets 415', async () => {
    srv.reset()
    const g = echoClient(p.server.grpcUrl as string, p.ca)
    const ok = await unary(g, 'Unary', Buffer.from('g'), bearer(ADMIN_KEY))
    const denied = await unary(g, 'Unary', Buffer.from('g'), bearer(undefined))
    g.close()
    assert.equal(ok.code, 0, ok.details)
    assert.equal(denied.code, grpc.status.UNAUTHENTICATED)
    assert.equal(srv.calls.length, 1)
    const { h2connect, h2request, h2close } = await import('../helpers/h2.ts')
    const s = await h2connect(p.server.grpcUrl as string, p.ca)
    const r = await h2request(s, { ':path': '/v1/objects', authorization: `Bearer ${ADMIN_KEY}` })
    await h2close(s)
    assert.equal(r.status, 415)
    assert.equal(r.json().reason, 'ERR_GRPC_ONLY')
  })
})

describe('gRPC without an upstream.grpcUrl, and with the gRPC upstream down', () => {
  it('no upstream.grpcUrl → UNIMPLEMENTED (12) naming the setting; upstream refused → UNAVAILABLE (14)', async () => {
    const none = await startProxy({ env: { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: ADMIN_KEY, AUTHENTICATION_APIKEY_USERS: 'u' } })
    const c1 = echoClient(none.url, none.ca)
    const r1 = await unary(c1, 'Unary', Buffer.from('x'), bearer(ADMIN_KEY))
    const anon = await unary(c1, 'Unary', Buffer.from('x'), bearer(undefined))
    c1.close()
    await none.stop()
    assert.equal(r1.code, grpc.status.UNIMPLEMENTED)
    assert.match(r1.details, /upstream\.grpcUrl/)
    assert.equal(anon.code, grpc.status.UNAUTHENTICATED, 'authentication comes first')

    const down = await startProxy({ env: { GATEHOUSE_UPSTREAM_GRPC_URL: `h2c://127.0.0.1:${await closedPort()}`, GATEHOUSE_TLS_ENABLED: 'false', AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: ADMIN_KEY, AUTHENTICATION_APIKEY_USERS: 'u' } })
    const c2 = echoClient(down.url, undefined)
    const r2 = await unary(c2, 'Unary', Buffer.from('x'), bearer(ADMIN_KEY))
    c2.close()
    await down.stop()
    assert.equal(r2.code, grpc.status.UNAVAILABLE)
    assertNoSecretsInLogs([...none.logs, ...down.logs])
  })
})

describe('gRPC: failed credentials are throttled per address like HTTP requests', () => {
  let srv: TestGrpcServer
  let p: TestProxy
  let client: grpc.Client
  const KEY = 'grpc-throttle-key-71c4e2'

  before(async () => {
    srv = await startGrpcServer()
    usedSecrets.add(KEY)
    p = await startProxy({
      env: { GATEHOUSE_UPSTREAM_GRPC_URL: srv.url, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'grpc-user' },
      yaml: 'authentication:\n  failureThrottle:\n    maxFailures: 3\n',
    })
    client = echoClient(p.url, p.ca)
  })
  after(async () => {
    client.close()
    await p.stop()
    await srv.close()
    assertNoSecretsInLogs(p.logs, ['grpc-wrong-0-zzzzzz', 'grpc-wrong-1-zzzzzz', 'grpc-wrong-2-zzzzzz'])
  })

  it('three wrong keys are 16; then even the right key is RESOURCE_EXHAUSTED (8), and the server saw nothing', async () => {
    srv.reset()
    for (let i = 0; i < 3; i++) assert.equal((await unary(client, 'Unary', Buffer.from('x'), bearer(`grpc-wrong-${i}-zzzzzz`))).code, grpc.status.UNAUTHENTICATED)
    const r = await unary(client, 'Unary', Buffer.from('x'), bearer(KEY))
    assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED, r.details)
    assert.equal(srv.calls.length, 0)
    // …and the same address is blocked over HTTP too: one table for every protocol.
    assert.equal((await p.request('/x', { token: KEY })).status, 429)
  })
})
