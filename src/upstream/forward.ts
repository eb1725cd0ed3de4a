/**
 * Stage 8: forward to the upstream (the HTTP/1.1 pool of `h1pool.ts`) and stream both ways.
 *
 * Bodies are never buffered: the client request is streamed to the upstream socket and the
 * upstream body is written into the response, so memory stays flat for any size. Failures map to
 * 502 (refused, reset, bad response) and 504 (timeouts) while no response byte has been sent;
 * after that the only honest signal is to cut the client connection.
 */
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { rootCertificates } from 'node:tls'
import { maxHeaderSize } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { H1Pool, type ExchangeHandler } from './h1pool.ts'
import { HOP_BY_HOP } from '../http/hop.ts'
import type { OutboundTrust } from './trust.ts'

/** Per-request hooks the handler gives the forwarder. */
export interface ForwardHooks {
  /** Sent back to the client as `X-Request-Id` (in the one writeHead). */
  readonly requestId: string
  /** The handler calls the registered function when the client connection closes early. */
  onAbortable(abort: () => void): void
  /** The exchange ended (the response is complete, or was cut after it started): the upstream status. */
  done(status: number): void
  /** The upstream failed before any response byte was sent: the error to answer with. */
  fail(err: GatehouseError): void
}

/** Forwards one request whose upstream headers are already built. */
export interface Forwarder {
  /**
   * Send the request upstream and stream the answer into `res`; ends with exactly one of
   * `hooks.done` or `hooks.fail` (callbacks rather than a promise: no promise, closure or
   * microtask per request on the hot path).
   */
  forward(req: IncomingMessage, res: ServerResponse, path: string, query: string, headers: string[], hooks: ForwardHooks): void
  close(): Promise<void>
}

export interface ForwarderOptions {
  readonly url: string
  readonly caFile: string | undefined
  /** Runtime CA (`security ca-cert`); the pool is rebuilt when it changes. */
  readonly trust?: OutboundTrust | undefined
  readonly timeouts: { readonly connect: number; readonly headers: number; readonly body: number }
  readonly maxRequestBody: number
  readonly maxResponseBody: number
}

/** Build the forwarder for an http(s) upstream. */
export function createHttpForwarder(o: ForwarderOptions): Forwarder {
  const base = new URL(o.url)
  const basePath = base.pathname.replace(/\/+$/, '')
  const fileCa = o.caFile === undefined ? undefined : readFileSync(o.caFile, 'utf8')
  const makePool = (): H1Pool => {
    const extra = [fileCa, o.trust?.extraCa].filter((x): x is string => x !== undefined)
    const ca = extra.length === 0 ? undefined : [...rootCertificates, ...extra]
    return new H1Pool({
      origin: base,
      ca,
      connectTimeout: o.timeouts.connect,
      headersTimeout: o.timeouts.headers,
      bodyTimeout: o.timeouts.body,
      keepAliveTimeout: 4_000,
      maxHeaderSize,
    })
  }
  let pool = makePool()
  // New trust: new connections use a new pool; requests in flight finish on the old one.
  const unsubscribe = o.trust?.subscribe(() => {
    const old = pool
    pool = makePool()
    void old.close()
  })

  return {
    forward(req, res, path, query, headers, hooks) {
      const hasBody = requestHasBody(req)
      let body: Readable | null = null
      if (hasBody) {
        const declared = Number(req.headers['content-length'] ?? NaN)
        if (o.maxRequestBody > 0 && declared > o.maxRequestBody) {
          hooks.fail(new GatehouseError('ERR_REQUEST_TOO_LARGE', { detail: `content-length ${declared}` }))
          return
        }
        body = o.maxRequestBody > 0 ? req.pipe(limiter(o.maxRequestBody, 'ERR_REQUEST_TOO_LARGE')) : req
      }
      // The upstream body is written straight into the client response with backpressure
      // (onData returns false, the drain resumes), and the raw header list becomes the
      // response's without an intermediate object — no stream pipeline, no promise per request.
      let abort: ((err: Error) => void) | undefined
      let aborted = false
      let status = 0
      let started = false
      let received = 0
      let settled = false
      let infoTimer: NodeJS.Timeout | undefined
      // The pool's resume for a paused body (from onHeaders), called on the response's drain.
      let drainResume: () => void = () => {}
      // One 'drain' listener at most per response: the parser hands on every chunk of a packet
      // even after a write said false, and a listener per chunk piled up (MaxListenersExceededWarning).
      let draining = false
      const onDrain = (): void => {
        draining = false
        drainResume()
      }
      // The final head is held until the first body byte (or the end of a bodiless response): a
      // body that is malformed before its first byte is then still answered 502, not a cut
      // connection without a status line. (Node sends a written head only with the first body
      // bytes anyway, so a client sees nothing later than before.)
      let heldStatus = 0
      let heldHead: string[] | undefined
      const sendHead = (): void => {
        started = true
        res.writeHead(heldStatus, heldHead)
        heldHead = undefined
      }
      const finish = (err?: GatehouseError): void => {
        if (settled) return
        settled = true
        if (err === undefined) hooks.done(status)
        else hooks.fail(err)
      }
      const cancel = (err: Error): void => {
        if (aborted || abort === undefined) return
        aborted = true
        abort(err)
      }
      // One 'close' listener per request (the handler's) aborts the upstream exchange.
      // (writableEnded, not writableFinished: an HTTP/2 compat response reports finished on a reset.)
      let clientGone = false
      hooks.onAbortable(() => {
        if (res.writableEnded) return
        clientGone = true
        cancel(new Error('client closed the connection'))
      })
      const handler: ExchangeHandler = {
        onConnect(a) {
          abort = a
          if (clientGone || res.destroyed) cancel(new Error('client closed the connection'))
        },
        onHeaders(statusCode, raw, resume) {
          if (statusCode < 200) {
            // 1xx informational answers are not relayed. Each restarts nothing, but an upstream
            // sending 1xx forever must not hold the client either: the final status must come
            // within one headers timeout of the first 1xx.
            infoTimer ??= setTimeout(() => cancel(new GatehouseError('ERR_UPSTREAM_TIMEOUT', { detail: 'no final status after a 1xx answer' })), o.timeouts.headers)
            return true
          }
          if (infoTimer !== undefined) clearTimeout(infoTimer)
          // HEAD, 204 and 304 answers have no body (RFC 9112 §6.3): their Content-Length limits nothing.
          const bodiless = statusCode === 204 || statusCode === 304
          const out = responseHeaders(raw, bodiless)
          if (o.maxResponseBody > 0 && !bodiless && req.method !== 'HEAD' && out.contentLength > o.maxResponseBody) {
            const err = new GatehouseError('ERR_UPSTREAM_RESPONSE_TOO_LARGE', { detail: `content-length ${out.contentLength}` })
            finish(err)
            cancel(err)
            return false
          }
          status = statusCode
          out.list.push('x-request-id', hooks.requestId)
          heldStatus = statusCode
          heldHead = out.list
          drainResume = resume
          return true
        },
        onData(chunk) {
          received += chunk.length
          if (o.maxResponseBody > 0 && received > o.maxResponseBody) {
            cancel(new GatehouseError('ERR_UPSTREAM_RESPONSE_TOO_LARGE', { detail: `more than ${o.maxResponseBody} bytes` }))
            return false
          }
          if (heldHead !== undefined) sendHead()
          if (res.write(chunk)) return true
          if (!draining) {
            draining = true
            res.once('drain', onDrain)
          }
          return false
        },
        // Nothing queued in the response (its own buffer or its socket's): every chunk written
        // so far is in the kernel, and the pool may read into the same memory again.
        released() {
          return res.writableLength === 0
        },
        onComplete() {
          if (heldHead !== undefined) sendHead()
          res.end()
          finish()
        },
        onError(err) {
          if (infoTimer !== undefined) clearTimeout(infoTimer)
          // The client left before the answer: nothing to answer, and not the upstream's failure
          // (the access line shows status 0 and aborted, not a 502 nobody received).
          if (clientGone) {
            finish()
            return
          }
          if (!started) {
            finish(translate(err))
            return
          }
          // The response has started: cut the connection so the client sees a truncated body.
          res.destroy()
          finish()
        },
      }
      pool.dispatch(req.method as string, `${basePath}${path}${query === '' ? '' : `?${query}`}`, headers, body, handler)
    },
    async close() {
      unsubscribe?.()
      await pool.close()
    },
  }
}

/**
 * Whether a request carries a body. HTTP/1.1 frames it with Content-Length or Transfer-Encoding;
 * HTTP/2 may send DATA frames without Content-Length (RFC 9113 §8.1), so there the stream
 * state decides: a HEADERS frame with END_STREAM has no body.
 */
export function requestHasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length']
  if (cl !== undefined) return cl !== '0'
  if (req.httpVersionMajor === 2) {
    const stream = (req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream
    return stream?.endAfterHeaders !== true
  }
  return req.headers['transfer-encoding'] !== undefined
}

/** A pass-through that fails once more than `max` bytes went through. */
function limiter(max: number, code: 'ERR_REQUEST_TOO_LARGE' | 'ERR_UPSTREAM_RESPONSE_TOO_LARGE'): Transform {
  let n = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      n += chunk.length
      if (n > max) cb(new GatehouseError(code, { detail: `more than ${max} bytes` }))
      else cb(null, chunk)
    },
  })
}

/** Response header names seen before, with what they are; bounded (an upstream inventing names cannot grow it). */
const NAME_KIND = new Map<string, number>()
const KEEP = 0
const HOP = 1
const CONNECTION = 2
const CONTENT_LENGTH = 3

function nameKind(name: string): number {
  let k = NAME_KIND.get(name)
  if (k !== undefined) return k
  const lower = name.toLowerCase()
  k = lower === 'connection' ? CONNECTION : HOP_BY_HOP.has(lower) ? HOP : lower === 'content-length' ? CONTENT_LENGTH : KEEP
  if (NAME_KIND.size < 1024) NAME_KIND.set(name, k)
  return k
}

/**
 * The upstream's raw header list, as the flat `[name, value, …]` list the response is written
 * with, without hop-by-hop headers and those named in Connection (kept in order and spelling,
 * duplicates included); also the declared Content-Length (NaN when absent).
 *
 * Content-Length goes on once, as one number: the parser accepted repeats and lists only when
 * every value is equal (RFC 9110 §8.6 lets a recipient use one), and `5, 5` passed on would make
 * the client's parser decide again. `bodiless` (204, 304) drops it: a 204 must not carry one
 * (RFC 9110 §8.6); on a 304 it may only restate the 200's length, which the proxy cannot check,
 * and llhttp and undici frame a 304 without a body whatever it says — so it carries nothing a
 * client needs, and a lenient client that framed by it would wait for a body that never comes.
 */
export function responseHeaders(raw: readonly string[], bodiless = false): { list: string[]; contentLength: number } {
  const list: string[] = []
  let connection: string | undefined
  let contentLength = NaN
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    const kind = nameKind(name)
    if (kind === HOP) continue
    if (kind === CONNECTION) {
      connection = connection === undefined ? value : `${connection},${value}`
      continue
    }
    if (kind === CONTENT_LENGTH) {
      if (bodiless || !Number.isNaN(contentLength)) continue
      const comma = value.indexOf(',')
      contentLength = Number(comma < 0 ? value : value.slice(0, comma))
      list.push(name, comma < 0 ? value : String(contentLength))
      continue
    }
    list.push(name, value)
  }
  if (connection === undefined) return { list, contentLength }
  const named = new Set(connection.toLowerCase().split(',').map((s) => s.trim()))
  named.delete('content-length')
  const kept: string[] = []
  for (let i = 0; i < list.length; i += 2) if (!named.has(list[i]!.toLowerCase())) kept.push(list[i]!, list[i + 1]!)
  return { list: kept, contentLength }
}

const REFUSED = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
const TIMEOUT = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])

/** Translate a pool/net/TLS error into a GatehouseError (the boundary of STYLE habit 1). */
export function translate(e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e
  const err = e as { code?: string; cause?: { code?: string }; message?: string }
  const code = err.code ?? err.cause?.code ?? ''
  // A limiter error may surface wrapped as the request body's error.
  const inner = (e as { cause?: unknown }).cause
  if (inner instanceof GatehouseError) return inner
  if (TIMEOUT.has(code)) return new GatehouseError('ERR_UPSTREAM_TIMEOUT', { detail: code, cause: e })
  if (REFUSED.has(code)) return new GatehouseError('ERR_UPSTREAM_UNAVAILABLE', { detail: code, cause: e })
  // The pool's parser errors carry HPE_* codes; undici 7 (the upgrade path's peers) leaves
  // HTTPParserError.code undefined (its table is keyed by name): match the class too.
  if ((e as Error).name === 'HTTPParserError' || code.startsWith('HPE_') || code === 'UND_ERR_INFO' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return new GatehouseError('ERR_UPSTREAM_BAD_RESPONSE', { detail: code, cause: e })
  return new GatehouseError('ERR_UPSTREAM_UNAVAILABLE', { detail: code || (err.message ?? 'unknown upstream error'), cause: e })
}
