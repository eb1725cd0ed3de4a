/**
 * A raw HTTP/1.x client for edge tests: node:net (or node:tls) sockets that write the test's
 * bytes exactly, collect what the server sends (latin1), and a parser for the responses in it.
 * Plus the assertions those tests share: the JSON error of SPEC §9 and an upstream that received
 * nothing.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import type { RecordingUpstream } from './upstream.ts'

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export interface Conn {
  socket: net.Socket
  /** Everything the server sent so far (latin1). */
  text(): string
  /** performance.now() when the server closed the connection, or undefined while open. */
  closedAt(): number | undefined
  /** Resolves true once `pred(text)` holds, false after `ms` or when the connection closed first. */
  until(pred: (t: string) => boolean, ms: number): Promise<boolean>
  /** Resolves with the close time, or undefined after `ms`. */
  closed(ms: number): Promise<number | undefined>
  connectedAt: number
}

/** Open a raw connection to `target` (a URL, or anything with one); `noDelay` turns Nagle off. */
export function connect(target: string | { url: string }, opts: { noDelay?: boolean } = {}): Promise<Conn> {
  const u = new URL(typeof target === 'string' ? target : target.url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(u.port), u.hostname)
    if (opts.noDelay === true) socket.setNoDelay(true)
    let data = ''
    let closedAt: number | undefined
    const waiters = new Set<() => void>()
    const poke = (): void => {
      for (const w of waiters) w()
    }
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1')
      poke()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      closedAt = performance.now()
      poke()
    })
    socket.once('connect', () => {
      socket.off('error', reject)
      const conn: Conn = {
        socket,
        connectedAt: performance.now(),
        text: () => data,
        closedAt: () => closedAt,
        until: (pred, ms) =>
          new Promise((res) => {
            const check = (): void => {
              if (pred(data)) done(true)
              else if (closedAt !== undefined) done(false)
            }
            const t = setTimeout(() => done(false), ms)
            const done = (v: boolean): void => {
              clearTimeout(t)
              waiters.delete(check)
              res(v)
            }
            waiters.add(check)
            check()
          }),
        closed: async (ms) => {
          await conn.until(() => false, ms)
          return closedAt
        },
      }
      resolve(conn)
    })
    socket.once('error', reject)
  })
}

export interface Parsed {
  status: number
  headers: Record<string, string>
  body: string
}

/** Every complete HTTP/1.x response in `text`, in order (Content-Length or chunked framing; 1xx have no body). */
export function responses(text: string): Parsed[] {
  const out: Parsed[] = []
  let rest = text
  while (rest.startsWith('HTTP/1.')) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const lines = rest.slice(0, end).split('\r\n')
    const status = Number(lines[0]?.split(' ')[1])
    const headers: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':')
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
    }
    rest = rest.slice(end + 4)
    if (status < 200) {
      out.push({ status, headers, body: '' })
      continue
    }
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      let body = ''
      for (;;) {
        const eol = rest.indexOf('\r\n')
        if (eol === -1) return out // incomplete: not counted
        const size = parseInt(rest.slice(0, eol), 16)
        if (Number.isNaN(size)) return out
        if (size === 0) {
          const fin = rest.indexOf('\r\n\r\n', eol)
          if (fin === -1) return out
          rest = rest.slice(fin + 4)
          break
        }
        if (rest.length < eol + 2 + size + 2) return out
        body += rest.slice(eol + 2, eol + 2 + size)
        rest = rest.slice(eol + 2 + size + 2)
      }
      out.push({ status, headers, body })
      continue
    }
    const len = Number(headers['content-length'] ?? rest.length)
    if (rest.length < len) return out
    out.push({ status, headers, body: rest.slice(0, len) })
    rest = rest.slice(len)
  }
  return out
}

/** SPEC §9 error shape (status, headers, body keys, code, reason, a message and a request id). */
export function assertJsonError(r: Parsed | undefined, status: number, reason: string): void {
  assert.ok(r !== undefined, 'no response')
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.body.slice(0, 200)}`)
  assert.equal(r.headers['content-type'], 'application/json')
  assert.equal(r.headers['cache-control'], 'no-store')
  const b = JSON.parse(r.body) as { code: number; message: string; reason: string; requestId: string }
  assert.deepEqual(Object.keys(b).sort(), ['code', 'message', 'reason', 'requestId'])
  assert.equal(b.code, status)
  assert.equal(b.reason, reason)
  assert.ok(b.message.length > 0)
  assert.ok(b.requestId.length > 0)
}

/** The upstream received nothing at all (after a short settle, so a late forward is caught). */
export async function assertUpstreamSawNothing(up: RecordingUpstream): Promise<void> {
  await sleep(100)
  assert.deepEqual(
    up.requests.map((r) => `${r.method} ${r.url}`),
    [],
    'the upstream received a request',
  )
}

/**
 * Write `text` on a fresh TLS connection to `p` and return everything the server sends until it
 * ends the connection (or 5 s pass).
 */
export function tlsWire(p: { url: string; ca: string | undefined }, text: string, opts: { servername?: string } = {}): Promise<string> {
  const u = new URL(p.url)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const o: tls.ConnectionOptions = { host: u.hostname, port: Number(u.port), ca: p.ca }
    if (opts.servername !== undefined) o.servername = opts.servername
    const s = tls.connect(o, () => s.write(text))
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')))
    s.on('error', reject)
    s.setTimeout(5000, () => {
      s.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    })
  })
}
