/**
 * HTTP/2 load with h2load (Debian `nghttp2-client`), next to HTTP/1.1 from the same tool
 * (`--h1`), so the two protocols are compared with one load generator. Over http:// h2load speaks
 * prior-knowledge h2c; over https:// it negotiates h2 (or http/1.1 with --h1) by ALPN.
 */
import { spawn } from 'node:child_process'

export interface H2loadOptions {
  url: string
  /** HTTP/1.1 instead of HTTP/2. */
  h1: boolean
  connections: number
  /** Concurrent streams per HTTP/2 connection (h2load -m); HTTP/1.1 has one. */
  streams: number
  seconds: number
  auth: string | undefined
  cpu: number | undefined
  /** More request headers, `name: value` each (gRPC: content-type, te). */
  headers?: readonly string[]
  /** Upload this file as the body of every request (h2load -d: the method becomes POST). */
  dataFile?: string
}

export interface H2loadResult {
  rps: number
  requests: number
  succeeded: number
  failed: number
  /** Responses with a 2xx status (h2load "status codes"). */
  ok2xx: number
  /** Mean request time in µs (h2load "time for request" mean). */
  meanUs: number
  raw: string
}

/** Run h2load once; resolves with its parsed summary. */
export function runH2load(o: H2loadOptions): Promise<H2loadResult> {
  const extra = [...(o.auth === undefined ? [] : [`authorization: ${o.auth}`]), ...(o.headers ?? [])].flatMap((h) => ['-H', h])
  const args = ['-t1', `-c${o.connections}`, `-m${o.h1 ? 1 : o.streams}`, '-D', String(o.seconds), ...(o.h1 ? ['--h1'] : []), ...extra, ...(o.dataFile === undefined ? [] : ['-d', o.dataFile]), o.url]
  const cmd = o.cpu === undefined ? 'h2load' : 'taskset'
  const full = o.cpu === undefined ? args : ['-c', String(o.cpu), 'h2load', ...args]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.once('error', reject)
    // h2load -D measures from the moment every connection is up; one that never comes up (a
    // handshake lost on a saturated core) would keep it running: bound every run.
    const guard = setTimeout(() => child.kill('SIGINT'), (o.seconds + 30) * 1000)
    child.once('exit', () => {
      clearTimeout(guard)
      const fin = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)
      const req = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(out)
      const codes = /status codes: (\d+) 2xx/.exec(out)
      const time = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)
      if (fin === null || req === null) {
        reject(new Error(`h2load gave no summary: ${out.slice(-400)}`))
        return
      }
      const mean = time?.[1] ?? '0us'
      const meanUs = mean.endsWith('ms') ? Number(mean.slice(0, -2)) * 1000 : mean.endsWith('us') ? Number(mean.slice(0, -2)) : Number(mean.replace(/s$/, '')) * 1e6
      resolve({ rps: Number(fin[1]), requests: Number(req[1]), succeeded: Number(req[2]), failed: Number(req[3]), ok2xx: Number(codes?.[1] ?? 0), meanUs, raw: out })
    })
  })
}
