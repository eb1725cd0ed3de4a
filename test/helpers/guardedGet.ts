/**
 * A GET through the proxy with node:http on a fresh connection that never throws and never waits
 * longer than a guard time: what came back (status, headers, the first 64 KiB of the body),
 * whether the body arrived whole, and whether the client was left hanging. For tests of
 * upstreams that misbehave, where "no answer" must be told apart from a failed one.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { performance } from 'node:perf_hooks'

export interface Got {
  status: number
  headers: http.IncomingHttpHeaders
  bytes: number
  text: string
  /** The body arrived whole (the response ended normally). */
  complete: boolean
  /** No end, no error, no close within the guard time. */
  hung: boolean
  ms: number
}

export interface GuardedGetOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token: string
  guardMs?: number
  onData?: (total: number) => void
}

/** GET `path` through `p` on a fresh connection; never throws, never waits longer than `guardMs` (8 s). */
export function guardedGet(p: { url: string }, path: string, opts: GuardedGetOptions): Promise<Got> {
  const u = new URL(p.url)
  const t0 = performance.now()
  return new Promise((resolve) => {
    let status = 0
    let headers: http.IncomingHttpHeaders = {}
    let bytes = 0
    const keep: Buffer[] = []
    let settled = false
    const done = (complete: boolean, hung = false): void => {
      if (settled) return
      settled = true
      clearTimeout(guard)
      resolve({ status, headers, bytes, text: Buffer.concat(keep).toString('utf8'), complete, hung, ms: performance.now() - t0 })
    }
    const req = http.request({ host: u.hostname, port: u.port, path, agent: false, headers: { authorization: `Bearer ${opts.token}` } }, (res) => {
      status = res.statusCode ?? 0
      headers = res.headers
      res.on('data', (c: Buffer) => {
        bytes += c.length
        if (bytes <= 64 * 1024) keep.push(c)
        opts.onData?.(bytes)
      })
      res.on('end', () => done(res.complete))
      res.on('aborted', () => done(false))
      res.on('error', () => done(false))
      res.on('close', () => done(res.complete))
    })
    req.on('error', () => done(false))
    const guard = setTimeout(() => {
      req.destroy()
      done(false, true)
    }, opts.guardMs ?? 8000)
    req.end()
  })
}

/** SPEC §9 error shape with a reason, answered within the guard time. */
export function assertGotError(r: Got, status: number, reason: string): void {
  assert.equal(r.hung, false, `no answer within the guard time (${Math.round(r.ms)} ms)`)
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text.slice(0, 300)}`)
  assert.equal(r.headers['content-type'], 'application/json')
  assert.equal(r.headers['cache-control'], 'no-store')
  const b = JSON.parse(r.text) as { code: number; message: string; reason: string; requestId: string }
  assert.equal(b.code, status)
  assert.equal(b.reason, reason)
  assert.ok(b.message.length > 0)
  assert.equal(b.requestId, r.headers['x-request-id'])
}

/** The proxy keeps serving: GET /good answers 200 `ok` (the raw upstream's default answer). */
export async function assertStillServes(p: { url: string }, token: string): Promise<void> {
  const r = await guardedGet(p, '/good', { token })
  assert.equal(r.status, 200, 'the proxy keeps serving')
  assert.equal(r.text, 'ok')
}
