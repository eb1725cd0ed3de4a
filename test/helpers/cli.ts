/**
 * Run the real `gatehouse` binary (dist/bin/gatehouse.js, built by `npm test`'s build step) as
 * a child process, the way users and the acceptance check do.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(ROOT, 'dist/bin/gatehouse.js')

/** Minimal environment for children: no inherited GATEHOUSE_/AUTHENTICATION_ variables. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' }
  return { ...env, ...extra }
}

/** Run a CLI command to completion. */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; input?: string } = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: baseEnv(opts.env), cwd: opts.cwd ?? ROOT, input: opts.input, encoding: 'utf8', timeout: 30_000 })
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

/** Run a CLI command asynchronously (for tests whose server, e.g. a recording upstream, lives in this process). */
export function runCliAsync(args: string[], env: Record<string, string>, cwd: string, input?: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: baseEnv(env), cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(t)
      resolve({ code: code ?? -1, stdout, stderr })
    })
    child.stdin.end(input ?? '')
  })
}

/** SHA-256 fingerprint of the certificate a listener presents in a new handshake (not verified). */
export function peerFingerprint(url: string): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), servername: 'localhost', rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256
      s.destroy()
      resolve(fp)
    })
    s.on('error', reject)
  })
}

export interface ServeProcess {
  child: ChildProcess
  dataUrl: string
  adminUrl: string
  stdout: string[]
  stderr: string[]
  /** Resolves with the exit code. */
  exited: Promise<number | null>
}

/**
 * Start `gatehouse serve` and wait for its "gatehouse is ready" line (with `until: 'listening'`,
 * for its "gatehouse is listening" line: bound, but /readyz may still be 503).
 */
export async function startServe(env: Record<string, string>, opts: { cwd?: string; args?: string[]; until?: 'ready' | 'listening' } = {}): Promise<ServeProcess> {
  const awaited = `"gatehouse is ${opts.until ?? 'ready'}"`
  const child = spawn(process.execPath, [BIN, 'serve', ...(opts.args ?? [])], { env: baseEnv({ GATEHOUSE_PORT: '0', GATEHOUSE_ADMIN_PORT: '0', GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1', GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1', ...env }), cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const stdout: string[] = []
  const stderr: string[] = []
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  let buf = ''
  const ready = new Promise<{ data: string; admin: string }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gatehouse did not become ready:\n${stdout.join('\n')}\n${stderr.join('')}`)), 15_000)
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString('utf8')
      let i
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        stdout.push(line)
        if (line.includes(awaited)) {
          clearTimeout(t)
          const j = JSON.parse(line) as { data: string; admin: string }
          resolve({ data: j.data, admin: j.admin })
        }
      }
    })
    child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString('utf8')))
    void exited.then((code) => {
      clearTimeout(t)
      reject(new Error(`gatehouse exited with ${code} before it was ready:\n${stderr.join('')}\n${stdout.join('\n')}`))
    })
  })
  const { data, admin } = await ready
  return { child, dataUrl: data, adminUrl: admin, stdout, stderr, exited }
}
