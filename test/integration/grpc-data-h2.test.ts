/**
 * gRPC calls on the data listener's HTTP/2 side are taken from the `stream` event before Node's
 * compat layer (src/server/h2.ts): the header-list limit still answers RESOURCE_EXHAUSTED before
 * the pipeline, a call with an `expect` header (left to the compat layer) is still relayed, and an
 * ordinary call is relayed with its reply and trailers.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startGrpcServer, type TestGrpcServer } from '../helpers/grpc.ts'
import { h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, type TestProxy } from '../helpers/proxy.ts'

const KEY = 'grpc-data-h2-key-7e41c2'
const frame = (s: string): Buffer => {
  const b = Buffer.from(s)
  const f = Buffer.alloc(5 + b.length)
  f.writeUInt32BE(b.length, 1)
  b.copy(f, 5)
  return f
}
const call = (extra: Record<string, string> = {}): Record<string, string> => ({ ':method': 'POST', ':path': '/test.Echo/Unary', 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${KEY}`, ...extra })

describe('gRPC on the data listener (TLS, ALPN h2) without the compat layer', () => {
  let srv: TestGrpcServer
  let p: TestProxy

  before(async () => {
    srv = await startGrpcServer()
    p = await startProxy({ env: { GATEHOUSE_UPSTREAM_GRPC_URL: srv.url, AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'grpc-h2-user' } })
  })
  after(async () => {
    await p.stop()
    await srv.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('a unary call is relayed: reply message, grpc-status 0 in the trailers, identity metadata upstream', async () => {
    srv.reset()
    const s = await h2connect(p.url, p.ca)
    const r = await h2request(s, call(), frame('hi'))
    s.destroy()
    assert.equal(r.status, 200)
    assert.equal(r.trailers?.['grpc-status'], '0')
    assert.ok(r.text.endsWith('echo:hi'), JSON.stringify(r.text))
    assert.equal(srv.calls[0]?.metadata['x-forwarded-user'], 'grpc-h2-user')
  })

  it('a header list over http2.maxHeaderListSize is RESOURCE_EXHAUSTED (trailers-only) and the server sees nothing', async () => {
    srv.reset()
    const s = await h2connect(p.url, p.ca)
    // Sent before the client has the server's SETTINGS: gatehouse's own check answers.
    const r = await h2request(s, call({ 'x-big': 'a'.repeat(20 * 1024) }), frame('big'))
    s.destroy()
    assert.equal(r.status, 200)
    assert.equal(r.headers['grpc-status'], '8')
    assert.equal(srv.calls.length, 0)
  })

  it('a call with expect: 100-continue (answered by the compat layer) is still relayed', async () => {
    srv.reset()
    const s = await h2connect(p.url, p.ca)
    const r = await h2request(s, call({ expect: '100-continue' }), frame('cont'))
    s.destroy()
    assert.equal(r.status, 200)
    assert.equal(r.trailers?.['grpc-status'], '0')
    assert.ok(r.text.endsWith('echo:cont'), JSON.stringify(r.text))
  })
})
