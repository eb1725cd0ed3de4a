/**
 * One HTTP exchange with the admin API over node:http/node:https, for the CLI.
 *
 * Why not undici (which the server uses for its upstream pool): a CLI command makes one or two
 * requests and exits, and importing undici alone costs about 100 ms, its pool keeps the process
 * alive for another ~200 ms after the answer, and a trust list built as "every root + our CA"
 * costs ~25 ms to parse — together more than the whole command should take (docs/benchmarks.md,
 * "CLI start-up"). Here each exchange uses its own connection (`Connection: close`), so the
 * process can exit the moment the answer is read.
 */
import http from 'node:http'
import https from 'node:https'
import * as tls from 'node:tls'

/** The answer: status, headers and the whole (bounded) body as text. */
export interface Exchange {
  readonly statusCode: number
  readonly headers: http.IncomingHttpHeaders
  readonly text: string
}

export interface ExchangeOptions {
  readonly method: string
  readonly headers: Record<string, string>
  readonly body?: string | undefined
  /**
   * PEM certificates trusted in addition to the default CAs (never instead of verification).
   * They are added to Node's default store, which is loaded lazily: cheaper than handing every
   * root over as `ca`, and it keeps NODE_EXTRA_CA_CERTS on every Node version.
   */
  readonly extraCa?: readonly string[] | undefined
  /**
   * A trusted certificate may end the chain even when it is not self-signed (a leaf or an
   * intermediate given with --ca is a trust anchor, as curl treats it). Verification stays on.
   */
  readonly partialChain?: boolean
  /** Until the connection (and TLS handshake) is up. */
  readonly connectTimeoutMs: number
  /** Until the whole answer has arrived. */
  readonly timeoutMs: number
  /** The largest answer read; a larger one fails the exchange. */
  readonly maxBytes: number
}

/** An exchange failure; `code` is what describeConnectError maps to advice. */
class ExchangeError extends Error {
  readonly code: string
  constructor(message: string, code: string) {
    super(message)
    this.code = code
  }
}

/** Send one request and read its answer. Network and TLS errors reject with their Node `code`. */
export function exchange(url: URL, o: ExchangeOptions): Promise<Exchange> {
  const secure = url.protocol === 'https:'
  let secureContext: tls.SecureContext | undefined
  if (secure && (o.extraCa !== undefined || o.partialChain === true)) {
    secureContext = tls.createSecureContext(o.partialChain === true ? { allowPartialTrustChain: true } : {})
    // `context.addCACert` extends the default store (the same call Node makes for each `ca`).
    for (const pem of o.extraCa ?? []) (secureContext.context as { addCACert(pem: string): void }).addCACert(pem)
  }
  const headers: Record<string, string> = { ...o.headers, connection: 'close' }
  if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body))
  return new Promise<Exchange>((resolve, reject) => {
    const opts: https.RequestOptions = { method: o.method, headers, agent: false, ...(secureContext === undefined ? {} : { secureContext }), rejectUnauthorized: true }
    const req = (secure ? https : http).request(url, opts)
    const fail = (e: Error): void => {
      clearTimeout(connectTimer)
      clearTimeout(answerTimer)
      req.destroy()
      reject(e)
    }
    const connectTimer = setTimeout(() => fail(new ExchangeError(`no connection within ${o.connectTimeoutMs} ms`, 'ETIMEDOUT')), o.connectTimeoutMs)
    const answerTimer = setTimeout(() => fail(new ExchangeError(`no answer within ${o.timeoutMs} ms`, 'ETIMEDOUT')), o.timeoutMs)
    req.once('socket', (s) => s.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer)))
    req.once('error', fail)
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > o.maxBytes) fail(new ExchangeError(`the answer is larger than ${o.maxBytes} bytes`, 'ERR_ANSWER_TOO_LARGE'))
        else chunks.push(c)
      })
      res.once('error', fail)
      res.once('end', () => {
        clearTimeout(connectTimer)
        clearTimeout(answerTimer)
        resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') })
      })
    })
    req.end(o.body)
  })
}
