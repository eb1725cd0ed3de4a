/**
 * WebSocket through gatehouse (docs/http2.md): the upgrade request is authenticated and
 * authorized before anything reaches the upstream; a refused upgrade is the JSON error of
 * SPEC §9 and no tunnel; an upstream that does not confirm the upgrade with a proper 101 never
 * gets a raw tunnel; identity headers reach the upstream's handshake, client copies do not.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { assertNoSecretsInLogs, startProxy, type TestProxy } from '../helpers/proxy.ts'

const KEY = 'ws-secret-key-77a1c3'
const READER = 'ws-reader-key-0d9e44'

interface WsUpstream {
  url: string
  /** Handshakes that reached the upstream (path and headers). */
  handshakes: { url: string; headers: http.IncomingHttpHeaders }[]
  /** Every TCP connection the upstream accepted. */
  connections: number
  close(): Promise<void>
}

/** A ws echo server; `/refuse` answers 403, `/bad-accept` answers 101 with a wrong Sec-WebSocket-Accept. */
async function startWsUpstream(): Promise<WsUpstream> {
  const handshakes: WsUpstream['handshakes'] = []
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('plain')
  })
  const sockets = new Set<Socket>()
  const up: WsUpstream = { url: '', handshakes, connections: 0, close: async () => {} }
  server.on('connection', (s) => {
    up.connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (req, socket, head) => {
    handshakes.push({ url: req.url ?? '', headers: req.headers })
    if (req.url === '/refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nrefused')
      return
    }
    if (req.url === '/bad-accept') {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\nraw-bytes')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (m, isBinary) => ws.send(isBinary ? m : `echo:${String(m)}`))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  up.close = () =>
    new Promise<void>((r) => {
      for (const c of wss.clients) c.terminate()
      for (const s of sockets) s.destroy()
      server.close(() => r())
    })
  return up
}

/** An upgrade attempt with node:https; resolves with the HTTP answer when there is no 101. */
function tryUpgrade(p: TestProxy, path: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string; upgraded: boolean }> {
  const u = new URL(p.url)
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: u.hostname,
      port: u.port,
      path,
      ca: p.ca,
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode ?? 0, headers: res.headers, text: '', upgraded: true })
    })
    req.on('response', (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, upgraded: false }))
      res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, upgraded: false }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('WebSocket through gatehouse', () => {
  let up: WsUpstream
  let p: TestProxy

  before(async () => {
    up = await startWsUpstream()
    p = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${KEY},${READER}`,
        AUTHENTICATION_APIKEY_USERS: 'ws-user,ws-reader',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'ws-user',
      },
    })
  })
  after(async () => {
    await p.stop()
    await up.close()
    assertNoSecretsInLogs(p.logs)
  })

  it('an echo with a key: the tunnel carries messages both ways; the upstream saw the identity, not the key', async () => {
    const before = up.handshakes.length
    const ws = new WebSocket(`${p.url.replace('https', 'wss')}/ws/echo`, { ca: p.ca, headers: { authorization: `Bearer ${KEY}`, 'x-forwarded-user': 'spoofed' } })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    const replies: string[] = []
    for (const m of ['hello', 'again']) {
      ws.send(m)
      replies.push(await new Promise<string>((r) => ws.once('message', (d) => r(String(d)))))
    }
    ws.send(Buffer.alloc(100_000, 7))
    const big = await new Promise<Buffer>((r) => ws.once('message', (d) => r(d as Buffer)))
    ws.close()
    assert.deepEqual(replies, ['echo:hello', 'echo:again'])
    assert.equal(big.length, 100_000)
    const hs = up.handshakes[before]
    assert.ok(hs !== undefined)
    assert.equal(hs.url, '/ws/echo')
    assert.equal(hs.headers['x-forwarded-user'], 'ws-user')
    assert.equal(hs.headers.authorization, undefined)
    assert.equal(hs.headers.upgrade, 'websocket')
  })

  it('attack: without a key → 401 JSON error, no connection reaches the upstream', async () => {
    const conns = up.connections
    const hs = up.handshakes.length
    const r = await tryUpgrade(p, '/ws/echo', {})
    assert.equal(r.upgraded, false)
    assert.equal(r.status, 401)
    assert.equal(r.headers['content-type'], 'application/json')
    assert.equal(r.headers['cache-control'], 'no-store')
    assert.match(String(r.headers['www-authenticate']), /^Bearer realm="gatehouse"/)
    const body = JSON.parse(r.text) as { reason: string; requestId: string }
    assert.equal(body.reason, 'ERR_UNAUTHENTICATED')
    assert.equal(body.requestId, r.headers['x-request-id'])
    // The access line of the refused upgrade says from where it came (the throttle's key).
    await new Promise((res) => setTimeout(res, 50))
    const line = p.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.requestId === body.requestId && l.status === 401)
    assert.equal(line?.client, '127.0.0.1', JSON.stringify(line))
    // and with the ws client: the connection fails
    const ws = new WebSocket(`${p.url.replace('https', 'wss')}/ws/echo`, { ca: p.ca })
    const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)))
    assert.equal(status, 401)
    assert.equal(up.connections, conns, 'no TCP connection to the upstream')
    assert.equal(up.handshakes.length, hs)
  })

  it('attack: a wrong key → 401; a user on no admin list → 403; nothing reaches the upstream', async () => {
    const conns = up.connections
    const wrong = await tryUpgrade(p, '/ws/echo', { authorization: 'Bearer wrong-key-ws-0000' })
    assert.equal(wrong.status, 401)
    assert.equal(JSON.parse(wrong.text).reason, 'ERR_INVALID_API_KEY')
    const reader = await tryUpgrade(p, '/ws/echo', { authorization: `Bearer ${READER}` })
    assert.equal(reader.status, 403)
    assert.equal(JSON.parse(reader.text).reason, 'ERR_FORBIDDEN')
    assert.equal(up.connections, conns)
  })

  it('an upstream that refuses the upgrade: its answer is relayed as a plain response, no tunnel', async () => {
    const r = await tryUpgrade(p, '/refuse', { authorization: `Bearer ${KEY}` })
    assert.equal(r.upgraded, false)
    assert.equal(r.status, 403)
    assert.equal(r.text, 'refused')
  })

  it('attack: an upstream 101 with a wrong Sec-WebSocket-Accept never becomes a raw tunnel (502)', async () => {
    const r = await tryUpgrade(p, '/bad-accept', { authorization: `Bearer ${KEY}` })
    assert.equal(r.upgraded, false)
    assert.equal(r.status, 502)
    assert.equal(JSON.parse(r.text).reason, 'ERR_UPSTREAM_BAD_RESPONSE')
    assert.ok(!r.text.includes('raw-bytes'))
  })

  it('a non-WebSocket Upgrade (h2c) without a body is served as an ordinary request', async () => {
    const u = new URL(p.url)
    const r = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = https.request({ host: u.hostname, port: u.port, path: '/plain', ca: p.ca, agent: false, headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA', authorization: `Bearer ${KEY}` } }, (res) => {
        let text = ''
        res.on('data', (d: Buffer) => (text += d.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      req.on('error', reject)
      req.end()
    })
    assert.equal(r.status, 200)
    assert.equal(r.text, 'plain')
  })
})
