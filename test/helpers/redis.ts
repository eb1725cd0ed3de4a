/**
 * A real Redis for the shared-store tests: Debian's `redis-server` on 127.0.0.1 and a free port,
 * in the foreground (`--daemonize no`), its data in a temporary directory. `persist: true` turns
 * on the append-only file with an fsync per write, so a server killed with SIGKILL and started
 * again on the same port and directory has every write it acknowledged — what "nothing
 * acknowledged is lost" needs. Only the process this helper started is ever signalled (by PID).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'

export const REDIS_SERVER = '/usr/bin/redis-server'

export interface RedisOptions {
  /** Append-only file with `appendfsync always` (survives SIGKILL). Default false: memory only. */
  readonly persist?: boolean
  /** `requirepass` for the default user. */
  readonly password?: string
  /** Also listen with TLS (PEM server certificate and key) on a second port: `tlsUrl`. */
  readonly tls?: { readonly certPem: string; readonly keyPem: string }
}

export interface RunningRedis {
  readonly port: number
  readonly url: string
  /** `rediss://localhost:PORT` when started with `tls`. */
  readonly tlsUrl: string | undefined
  /** The server's PID while it runs. */
  pid(): number | undefined
  /** Kill the server (SIGKILL by default: an outage, not a shutdown) and wait for its exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Start it again on the same port and data directory. */
  restart(): Promise<void>
  /** Run one command through a raw connection (e.g. FLUSHALL, PTTL); the reply as text. */
  command(...args: string[]): Promise<string>
  /** Stop and remove the data directory. */
  close(): Promise<void>
}

/** A TCP port that was free a moment ago (bound on 127.0.0.1:0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Start a redis-server; fails (never skips) when Debian's package is missing. */
export async function startRedis(opts: RedisOptions = {}): Promise<RunningRedis> {
  if (!existsSync(REDIS_SERVER)) {
    throw new Error(`${REDIS_SERVER} is missing: install Debian's redis-server (apt-get install -y --no-install-recommends redis-server); .ci/run does this`)
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-redis-'))
  const port = await freePort()
  const tlsPort = opts.tls === undefined ? undefined : await freePort()
  if (opts.tls !== undefined) {
    writeFileSync(path.join(dir, 'server.crt'), opts.tls.certPem)
    writeFileSync(path.join(dir, 'server.key'), opts.tls.keyPem, { mode: 0o600 })
  }
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const args = (): string[] => [
    '--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'no', '--dir', dir, '--save', '',
    '--appendonly', opts.persist === true ? 'yes' : 'no', '--appendfsync', 'always',
    '--protected-mode', 'yes', '--loglevel', 'warning', '--logfile', '',
    ...(opts.password === undefined ? [] : ['--requirepass', opts.password]),
    ...(tlsPort === undefined ? [] : ['--tls-port', String(tlsPort), '--tls-cert-file', path.join(dir, 'server.crt'), '--tls-key-file', path.join(dir, 'server.key'), '--tls-auth-clients', 'no']),
  ]

  const launch = async (): Promise<void> => {
    let out = ''
    const c = spawn(REDIS_SERVER, args(), { stdio: ['ignore', 'pipe', 'pipe'] })
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    c.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    child = c
    exited = new Promise((resolve) => c.once('exit', () => resolve()))
    const deadline = Date.now() + 10_000
    for (;;) {
      if (c.exitCode !== null) throw new Error(`redis-server exited at start (${c.exitCode}): ${out}`)
      try {
        const r = await raw(port, opts.password === undefined ? ['PING'] : ['AUTH', opts.password, 'PING'])
        if (r.includes('PONG')) return
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on 127.0.0.1:${port}: ${out}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  const stop = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const c = child
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    if (c.pid !== undefined) process.kill(c.pid, signal)
    await exited
    child = undefined
  }

  await launch()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    tlsUrl: tlsPort === undefined ? undefined : `rediss://localhost:${tlsPort}`,
    pid: () => child?.pid,
    stop,
    restart: async () => {
      await stop()
      await launch()
    },
    command: (...a: string[]) => raw(port, opts.password === undefined ? a : ['AUTH', opts.password, ...a]),
    close: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Send commands (one inline command of the given words, or AUTH then one) and read the reply text. */
function raw(port: number, words: string[]): Promise<string> {
  const cmds: string[][] = words[0] === 'AUTH' ? [words.slice(0, 2), words.slice(2)] : [words]
  const body = cmds.map((w) => `*${w.length}\r\n${w.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('')}`).join('')
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    let buf = ''
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error('redis raw command timed out'))
    }, 2000)
    s.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    s.on('data', (d) => {
      buf += d.toString()
      // A complete reply per command sent: count top-level replies loosely (tests use simple ones).
      if (complete(buf, cmds.length)) {
        clearTimeout(timer)
        s.end()
        resolve(buf)
      }
    })
    s.write(body)
  })
}

/** Whether `buf` holds `n` complete RESP replies (simple strings, errors, integers, bulk strings, flat arrays). */
function complete(buf: string, n: number): boolean {
  let i = 0
  const line = (): string | undefined => {
    const e = buf.indexOf('\r\n', i)
    if (e < 0) return undefined
    const l = buf.slice(i, e)
    i = e + 2
    return l
  }
  const one = (): boolean => {
    const l = line()
    if (l === undefined) return false
    const t = l[0]
    if (t === '+' || t === '-' || t === ':') return true
    if (t === '$') {
      const len = Number(l.slice(1))
      if (len < 0) return true
      if (Buffer.byteLength(buf.slice(i)) < len + 2) return false
      i += len + 2
      return true
    }
    if (t === '*') {
      const count = Number(l.slice(1))
      for (let k = 0; k < count; k++) if (!one()) return false
      return true
    }
    return true
  }
  for (let k = 0; k < n; k++) if (!one()) return false
  return true
}
