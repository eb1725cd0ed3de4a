/**
 * The gRPC upstream: one HTTP/2 client session to `upstream.grpcUrl`, shared by every call and
 * replaced when it goes away (GOAWAY, close, error). `h2c://` is cleartext HTTP/2 with prior
 * knowledge; `https://` is HTTP/2 over TLS with the same outbound trust as the HTTP upstream
 * (system CAs + `upstream.caFile` + the runtime CA of `security ca-cert`).
 */
import { readFileSync } from 'node:fs'
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2'
import { isIP } from 'node:net'
import { rootCertificates } from 'node:tls'
import type { OutboundTrust } from './trust.ts'

/** Opens streams to the gRPC upstream. */
export interface GrpcUpstream {
  /** `scheme` and `authority` of the upstream, for the request pseudo-headers. */
  readonly scheme: 'http' | 'https'
  readonly authority: string
  /** Open one stream on the shared session (connecting first when needed). Never throws for I/O: errors arrive as the stream's `error`. */
  request(headers: OutgoingHttpHeaders): ClientHttp2Stream
  /** Close the session gracefully (in-flight streams finish). */
  close(): Promise<void>
}

export interface GrpcUpstreamOptions {
  readonly url: string
  readonly caFile: string | undefined
  readonly trust?: OutboundTrust | undefined
  /** Connect timeout in ms: a session that is not up by then is destroyed (its streams fail → UNAVAILABLE). */
  readonly connectTimeout: number
}

/** Create the gRPC upstream of a validated `upstream.grpcUrl` (h2c://, http:// or https://). */
export function createGrpcUpstream(o: GrpcUpstreamOptions): GrpcUpstream {
  const u = new URL(o.url)
  const tls = u.protocol === 'https:'
  const port = u.port !== '' ? u.port : tls ? '443' : '80'
  const authority = `${u.hostname}:${port}`
  const origin = `${tls ? 'https' : 'http'}://${authority}`
  const fileCa = o.caFile === undefined ? undefined : readFileSync(o.caFile, 'utf8')
  let session: ClientHttp2Session | undefined

  const connect = (): ClientHttp2Session => {
    const extra = [fileCa, o.trust?.extraCa].filter((x): x is string => x !== undefined)
    const host = u.hostname.replace(/^\[|\]$/g, '')
    // SNI only for names (RFC 6066 §3: never an IP literal).
    const s = http2.connect(origin, tls ? { ...(extra.length === 0 ? {} : { ca: [...rootCertificates, ...extra] }), ...(isIP(host) === 0 ? { servername: host } : {}) } : {})
    const timer = setTimeout(() => {
      if (!s.connecting) return
      const e = Object.assign(new Error(`gRPC upstream: no connection within ${o.connectTimeout} ms`), { code: 'ETIMEDOUT' })
      s.destroy(e)
    }, o.connectTimeout)
    timer.unref()
    const forget = (): void => {
      clearTimeout(timer)
      if (session === s) session = undefined
    }
    s.once('connect', () => clearTimeout(timer))
    // A session error is also delivered to each of its streams; here it only retires the session.
    s.on('error', forget)
    s.once('goaway', forget)
    s.once('close', forget)
    return s
  }

  const unsubscribe = o.trust?.subscribe(() => {
    // New trust: the next call connects with it; calls in flight finish on the old session.
    const old = session
    session = undefined
    old?.close()
  })

  return {
    scheme: tls ? 'https' : 'http',
    authority,
    request(headers) {
      if (session === undefined || session.closed || session.destroyed) session = connect()
      return session.request(headers, { endStream: false })
    },
    close() {
      unsubscribe?.()
      const s = session
      session = undefined
      if (s === undefined || s.destroyed) return Promise.resolve()
      return new Promise<void>((resolve) => {
        const t = setTimeout(() => s.destroy(), 2_000)
        t.unref()
        s.close(() => {
          clearTimeout(t)
          resolve()
        })
      })
    },
  }
}
