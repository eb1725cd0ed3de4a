/**
 * Reading a console form post: `application/x-www-form-urlencoded` only, at most
 * {@link MAX_FORM_BYTES}, whole within the deadline (`admin.bodyTimeout`) — the same rules as the
 * admin API's JSON bodies, sized for the largest form (a certificate chain and its key).
 */
import type { IncomingMessage } from 'node:http'
import { GatehouseError } from '../errors.ts'

/** 64 KiB: a PEM chain of a few certificates and a key is well under; nothing else comes close. */
export const MAX_FORM_BYTES = 64 * 1024

/** A parsed form: the first value of each field (a repeated field never overrides the first). */
export type Form = ReadonlyMap<string, string>

/** Parse an urlencoded body; the first occurrence of a name wins. */
export function parseForm(text: string): Form {
  const out = new Map<string, string>()
  for (const [k, v] of new URLSearchParams(text)) if (!out.has(k)) out.set(k, v)
  return out
}

/**
 * Read and parse the body. 415 for any other content type (a multipart or JSON body is not what
 * the console's forms send), 413 past the cap, 408 past the deadline (the deadline covers the
 * whole body, so a drip-feed is cut when it passes).
 */
export function readForm(req: IncomingMessage, timeoutMs: number, maxBytes: number = MAX_FORM_BYTES): Promise<Form> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') {
    return Promise.reject(new GatehouseError('ERR_UNSUPPORTED_MEDIA_TYPE', { message: 'the console’s forms send application/x-www-form-urlencoded bodies only', detail: `console form content-type ${JSON.stringify((req.headers['content-type'] ?? '(none)').slice(0, 64))}` }))
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let n = 0
    let settled = false
    const finish = (err: unknown, v?: Form): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.off('data', onData).off('end', onEnd).off('error', onError)
      if (err !== undefined) {
        req.pause()
        reject(err)
      } else resolve(v as Form)
    }
    const timer = setTimeout(() => {
      finish(new GatehouseError('ERR_REQUEST_TIMEOUT', { message: `the form did not arrive within ${Math.round(timeoutMs / 1000)} s (admin.bodyTimeout)`, detail: `console form: ${n} bytes in ${timeoutMs} ms`, headers: { connection: 'close' } }))
    }, timeoutMs)
    const onData = (c: Buffer): void => {
      n += c.length
      if (n > maxBytes) finish(new GatehouseError('ERR_REQUEST_TOO_LARGE', { message: `the form is larger than ${Math.round(maxBytes / 1024)} KiB`, headers: { connection: 'close' } }))
      else chunks.push(c)
    }
    const onEnd = (): void => finish(undefined, parseForm(Buffer.concat(chunks).toString('utf8')))
    const onError = (e: Error): void => finish(e)
    req.on('data', onData).on('end', onEnd).on('error', onError)
  })
}
