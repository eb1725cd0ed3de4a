/**
 * A real recording upstream on 127.0.0.1:0. It records every request it receives (method, url,
 * headers, body size) so tests can assert what reached it — or that nothing did. Behaviour per
 * request is chosen by path prefix:
 *   /download/<bytes>  stream that many bytes back
 *   /hang              never answer (for 504)
 *   /reset             destroy the socket (for 502)
 *   /slow-body         send headers, then wait 60 s before the body
 *   /reset-mid-body/<bytes>  declare that many bytes, send about a tenth, then reset (TCP RST)
 *   anything else      200 JSON of what was received
 * Each record also tells whether the request body arrived whole (`complete`) or the request was
 * cut before its end (`aborted`), so a test can assert that a request never completed upstream.
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface Recorded {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  bodyBytes: number
  /** The whole request (headers and body) arrived. */
  complete: boolean
  /** The connection went away before the request was complete. */
  aborted: boolean
}

export interface RecordingUpstream {
  url: string
  port: number
  requests: Recorded[]
  /** Forget recorded requests. */
  reset(): void
  close(): Promise<void>
}

/** Start a recording upstream. */
export async function startUpstream(): Promise<RecordingUpstream> {
  const requests: Recorded[] = []
  const sockets = new Set<Socket>()
  const server = http.createServer({ requestTimeout: 0 }, (req, res) => {
    const url = req.url ?? '/'
    const rec: Recorded = { method: req.method ?? '', url, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, complete: false, aborted: false }
    requests.push(rec)
    req.once('end', () => {
      rec.complete = true
    })
    req.once('close', () => {
      if (req.complete) rec.complete = true
      else rec.aborted = true
    })
    if (url.startsWith('/reset') && !url.startsWith('/reset-mid-body')) {
      req.socket.destroy()
      return
    }
    if (url.startsWith('/hang')) return
    req.on('data', (c: Buffer) => {
      rec.bodyBytes += c.length
    })
    req.on('end', () => {
      const dl = /^\/download\/(\d+)/.exec(url)
      if (dl !== null) {
        streamBytes(res, Number(dl[1]))
        return
      }
      const mid = /^\/reset-mid-body\/(\d+)/.exec(url)
      if (mid !== null) {
        const total = Number(mid[1])
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
        res.write(Buffer.alloc(Math.max(1, Math.floor(total / 10)), 0x62), () => req.socket.resetAndDestroy())
        return
      }
      if (url.startsWith('/slow-body')) {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('start')
        return
      }
      const body = JSON.stringify({ method: rec.method, url, headers: req.headers, bodyBytes: rec.bodyBytes })
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'recording', connection: 'keep-alive', 'keep-alive': 'timeout=5' })
      res.end(body)
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    reset: () => {
      requests.length = 0
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

/**
 * An upstream on 127.0.0.1:0 that stops reading each request body for `pauseMs` (backpressure
 * all the way back to the client), then reads it whole and answers `ok`.
 */
export async function startSlowReader(pauseMs: number): Promise<{ url: string; received(): number; close(): Promise<void> }> {
  let received = 0
  const server = http.createServer((req, res) => {
    req.pause()
    setTimeout(() => {
      req.on('data', (c: Buffer) => (received += c.length))
      req.on('end', () => res.end('ok'))
      req.resume()
    }, pauseMs)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => received,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/** A port on 127.0.0.1 that nothing listens on (bound, then closed): a refused upstream. */
export async function closedPort(): Promise<number> {
  const s = http.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/** Answer 200 with `total` bytes (Content-Length declared), written with backpressure. */
export function streamBytes(res: http.ServerResponse, total: number): void {
  let left = total
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left })
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, chunk.length)
      left -= n
      if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        res.once('drain', pump)
        return
      }
    }
    res.end()
  }
  pump()
}
