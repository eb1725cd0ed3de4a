/**
 * Load generators: wrk (pinned to the load core, with bench/lib/wrk.lua for headers, rotating
 * tokens and a JSON summary), and a Node/undici loop for machines without wrk (the CI smoke run).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { hasTaskset } from './proc.ts'

const LUA = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wrk.lua')

/** What one load run measured. */
export interface LoadResult {
  /** Requests completed (any status). */
  requests: number
  /** Responses that were not 2xx/3xx, plus socket errors. */
  errors: number
  seconds: number
  /** Latency percentiles in microseconds. */
  p50Us: number
  p99Us: number
  /** What the errors were (wrk: non-2xx/3xx, connect, read, write, timeout). */
  errorDetail: string
}

export interface LoadOptions {
  url: string
  connections: number
  seconds: number
  /** A fixed Authorization header value. */
  auth?: string | undefined
  /** A file of tokens sent in turn, one per request (`Bearer <line>`). */
  tokensFile?: string | undefined
  /** CPU to pin the load generator to. */
  cpu?: number
}

const loads = new Set<ChildProcess>()

/** Kill any wrk still running (on abort). */
export function stopLoad(): void {
  for (const c of loads) c.kill('SIGKILL')
  loads.clear()
}

/** Run wrk once (`-t1 -c<n> -d<s> --latency`). */
export function runWrk(o: LoadOptions): Promise<LoadResult> {
  const argv = ['wrk', '-t1', `-c${o.connections}`, `-d${Math.max(1, Math.round(o.seconds))}s`, '--latency', '--timeout', '5s', '-s', LUA, o.url]
  const cmd = o.cpu !== undefined && hasTaskset ? ['taskset', '-c', String(o.cpu), ...argv] : argv
  const env = { ...process.env, BENCH_AUTH: o.auth ?? '', BENCH_TOKENS: o.tokensFile ?? '' }
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0] as string, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
    loads.add(child)
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const killer = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 20) * 1000)
    child.once('error', reject)
    child.once('exit', (code) => {
      clearTimeout(killer)
      loads.delete(child)
      const m = /BENCH_RESULT (\{.*\})/.exec(out)
      if (m === null) return reject(new Error(`wrk exited ${code} without a result:\n${out.trim()}`))
      const r = JSON.parse(m[1] as string) as { requests: number; duration_us: number; status_errors: number; connect: number; read: number; write: number; timeout: number; p50: number; p99: number }
      resolve({
        requests: r.requests,
        errors: r.status_errors + r.connect + r.read + r.write + r.timeout,
        seconds: r.duration_us / 1e6,
        p50Us: r.p50,
        p99Us: r.p99,
        errorDetail: `status ${r.status_errors}, connect ${r.connect}, read ${r.read}, write ${r.write}, timeout ${r.timeout}`,
      })
    })
  })
}

/** The same measurement with undici (keep-alive connections, one request in flight on each). */
export async function runNodeLoad(o: LoadOptions, tokens?: string[]): Promise<LoadResult> {
  const u = new URL(o.url)
  const pool = new Pool(u.origin, { connections: o.connections, pipelining: 1, connect: { rejectUnauthorized: false } })
  const lat: number[] = []
  let requests = 0
  let errors = 0
  let stop = false
  let next = 0
  const worker = async (): Promise<void> => {
    while (!stop) {
      const auth = tokens !== undefined && tokens.length > 0 ? `Bearer ${tokens[next++ % tokens.length] as string}` : o.auth
      const t0 = process.hrtime.bigint()
      try {
        const r = await pool.request({ path: u.pathname + u.search, method: 'GET', headers: auth === undefined ? {} : { authorization: auth } })
        await r.body.dump()
        if (r.statusCode >= 400) errors++
      } catch {
        errors++
      }
      lat.push(Number(process.hrtime.bigint() - t0) / 1000)
      requests++
    }
  }
  const t0 = process.hrtime.bigint()
  const timer = setTimeout(() => (stop = true), o.seconds * 1000)
  await Promise.all(Array.from({ length: o.connections }, worker))
  clearTimeout(timer)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  await pool.close()
  lat.sort((a, b) => a - b)
  const pct = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? 0
  return { requests, errors, seconds, p50Us: pct(0.5), p99Us: pct(0.99), errorDetail: `${errors} failed or status >= 400` }
}
