/**
 * Bounded JSON fetches for discovery documents and JWKS: every fetch is limited in time and in
 * bytes (a 50 MB JWKS is refused from its Content-Length, or cut off as it streams), and only
 * 200 with a JSON object is accepted.
 */
import type { Dispatcher } from 'undici'
import { undici } from '../../lazyModules.ts'

/** Why a fetch failed; logged, never sent to clients. */
export class FetchError extends Error {
  readonly reason: 'timeout' | 'too-large' | 'status' | 'not-json' | 'network' | 'no-keys'
  constructor(reason: FetchError['reason'], message: string) {
    super(message)
    this.name = 'FetchError'
    this.reason = reason
  }
}

export interface FetchLimits {
  readonly timeoutMs: number
  readonly maxBytes: number
}

/** An HTTP client for one issuer (its own trust: system CAs, or a custom CA that replaces them). */
export function issuerDispatcher(ca: string | string[] | undefined, timeoutMs: number): Dispatcher {
  return new (undici().Agent)({ connect: { timeout: timeoutMs, ...(ca === undefined ? {} : { ca }) }, keepAliveTimeout: 10_000 })
}

/**
 * GET a document's bytes, bounded in time and size.
 *
 * @throws FetchError
 */
export async function fetchBytes(url: string, dispatcher: Dispatcher, limits: FetchLimits): Promise<Buffer> {
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), limits.timeoutMs)
  try {
    let res: Dispatcher.ResponseData
    try {
      res = await undici().request(url, { dispatcher, signal: ac.signal, headers: { accept: 'application/json' }, headersTimeout: limits.timeoutMs, bodyTimeout: limits.timeoutMs })
    } catch (e) {
      throw ac.signal.aborted ? new FetchError('timeout', `no answer from ${url} within ${limits.timeoutMs} ms`) : new FetchError('network', `${url}: ${(e as Error).message}`)
    }
    if (res.statusCode !== 200) {
      discard(res.body)
      throw new FetchError('status', `${url} answered ${res.statusCode}`)
    }
    const declared = Number(res.headers['content-length'] ?? NaN)
    if (declared > limits.maxBytes) {
      discard(res.body)
      throw new FetchError('too-large', `${url} declares ${declared} bytes (limit ${limits.maxBytes})`)
    }
    const chunks: Buffer[] = []
    let n = 0
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        n += chunk.length
        if (n > limits.maxBytes) {
          discard(res.body)
          throw new FetchError('too-large', `${url} sent more than ${limits.maxBytes} bytes`)
        }
        chunks.push(chunk)
      }
    } catch (e) {
      if (e instanceof FetchError) throw e
      throw ac.signal.aborted ? new FetchError('timeout', `${url} did not finish within ${limits.timeoutMs} ms`) : new FetchError('network', `${url}: ${(e as Error).message}`)
    }
    return Buffer.concat(chunks)
  } finally {
    clearTimeout(timer)
  }
}

/** GET a text document (e.g. a PEM certificate). */
export async function fetchText(url: string, dispatcher: Dispatcher, limits: FetchLimits): Promise<string> {
  return (await fetchBytes(url, dispatcher, limits)).toString('utf8')
}

/**
 * GET a JSON object.
 *
 * @throws FetchError
 */
export async function fetchJson(url: string, dispatcher: Dispatcher, limits: FetchLimits): Promise<Record<string, unknown>> {
  const body = await fetchBytes(url, dispatcher, limits)
  let v: unknown
  try {
    v = JSON.parse(body.toString('utf8'))
  } catch {
    throw new FetchError('not-json', `${url} did not answer JSON`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FetchError('not-json', `${url} did not answer a JSON object`)
  return v as Record<string, unknown>
}

/** Stop reading a body without an unhandled 'aborted' error. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {})
  body.destroy()
}
