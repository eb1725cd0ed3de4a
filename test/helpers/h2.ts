/**
 * HTTP/2 test client helpers: one request over a `node:http2` session (TLS with the proxy's CA,
 * or prior-knowledge h2c for http:// URLs), collecting status, headers, body and trailers.
 */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'

export interface H2Reply {
  status: number
  headers: IncomingHttpHeaders
  trailers: IncomingHttpHeaders | undefined
  text: string
  /** The stream's RST_STREAM code (0 = closed cleanly). */
  rstCode: number
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Open a session to `url` (https: TLS trusting `ca`; http: h2c with prior knowledge). */
export function h2connect(url: string, ca?: string, settings?: http2.Settings): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(url, { ...(ca === undefined ? {} : { ca }), ...(settings === undefined ? {} : { settings }) })
    s.once('connect', () => {
      s.off('error', reject)
      s.on('error', () => {})
      resolve(s)
    })
    s.once('error', reject)
  })
}

/** One request on `session`; never rejects on a status, resolves on stream close. */
export function h2request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string | Buffer): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'GET', ...headers }, { endStream: body === undefined })
    let status = 0
    let respHeaders: IncomingHttpHeaders = {}
    let trailers: IncomingHttpHeaders | undefined
    const chunks: Buffer[] = []
    req.on('response', (h) => {
      status = Number(h[':status'])
      respHeaders = h
    })
    req.on('trailers', (t) => {
      trailers = t
    })
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ERR_HTTP2_STREAM_ERROR') reject(e)
    })
    req.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      resolve({ status, headers: respHeaders, trailers, text, rstCode: req.rstCode ?? 0, json: () => JSON.parse(text) })
    })
    if (body !== undefined) req.end(body)
  })
}

/** Close a session and wait for it. */
export function h2close(s: ClientHttp2Session): Promise<void> {
  if (s.destroyed) return Promise.resolve()
  return new Promise((r) => s.close(() => r()))
}
