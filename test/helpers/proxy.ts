/**
 * Start gatehouse in-process for a test, configured by environment variables and/or a YAML
 * text, with its own temporary state directory, ports 0, and every log line captured (so the
 * test can assert that no secret was logged).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { Agent, request as undiciRequest } from 'undici'
import { loadConfig, formatProblem } from '../../src/config/load.ts'
import { createLogger } from '../../src/log.ts'
import { startServer, type RunningServer } from '../../src/server/serve.ts'

export interface TestProxy {
  server: RunningServer
  url: string
  adminUrl: string | undefined
  /** The PEM certificate clients trust (undefined when TLS is off). */
  ca: string | undefined
  dir: string
  logs: string[]
  /** A request through the proxy; never throws on HTTP status. */
  request(p: string, opts?: RequestOpts): Promise<Reply>
  admin(p: string, opts?: RequestOpts): Promise<Reply>
  stop(): Promise<void>
}

export interface RequestOpts {
  method?: string
  headers?: Record<string, string | string[]>
  body?: string | Buffer | NodeJS.ReadableStream
  token?: string
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Secrets used by tests; the log check greps for each. */
export const usedSecrets = new Set<string>()

/** Start a proxy. `env` is the complete environment it sees (process.env is not inherited). */
export async function startProxy(opts: { env?: Record<string, string>; yaml?: string; logLevel?: string } = {}): Promise<TestProxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-test-'))
  let configPath: string | undefined
  if (opts.yaml !== undefined) {
    configPath = path.join(dir, 'proxy.yaml')
    writeFileSync(configPath, opts.yaml)
  }
  const env: Record<string, string> = {
    GATEHOUSE_PORT: '0',
    GATEHOUSE_ADMIN_PORT: '0',
    GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1',
    GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1',
    GATEHOUSE_STATE_DIR: path.join(dir, 'state'),
    GATEHOUSE_LOG_LEVEL: opts.logLevel ?? 'trace',
    ...opts.env,
  }
  for (const [k, v] of Object.entries(env)) if (/ALLOWED_KEYS/.test(k)) v.split(',').filter((s) => s.length > 3).forEach((s) => usedSecrets.add(s))
  const r = loadConfig({ configPath, env, cwd: dir })
  if (r.config === undefined) throw new Error(`test config invalid:\n${r.problems.map(formatProblem).join('\n')}`)
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''))
      cb()
    },
  })
  const logger = createLogger(r.config.log.level, sink)
  const server = await startServer(r.config, logger, { load: { configPath, env, cwd: dir } })
  const ca = server.cert === undefined ? undefined : readFileSync(server.cert.certFile, 'utf8')
  const agent = new Agent({ connect: ca === undefined ? {} : { ca }, keepAliveTimeout: 1000 })
  const send = async (base: string, p: string, o: RequestOpts = {}): Promise<Reply> => {
    const headers: Record<string, string | string[]> = { ...o.headers }
    if (o.token !== undefined) {
      usedSecrets.add(o.token)
      headers.authorization = `Bearer ${o.token}`
    }
    const res = await undiciRequest(`${base}${p}`, { method: (o.method ?? 'GET') as 'GET', headers, body: o.body as string | undefined, dispatcher: agent })
    const text = await res.body.text()
    return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) }
  }
  return {
    server,
    url: server.dataUrl,
    adminUrl: server.adminUrl,
    ca,
    dir,
    logs,
    request: (p, o) => send(server.dataUrl, p, o),
    // The admin API takes JSON bodies only (415 otherwise); say so unless the test chose a type.
    admin: (p, o) => send(server.adminUrl as string, p, o?.body === undefined || Object.keys(o.headers ?? {}).some((h) => h.toLowerCase() === 'content-type') ? o : { ...o, headers: { ...o.headers, 'content-type': 'application/json' } }),
    stop: async () => {
      await server.stop(1000)
      await agent.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Wait until the proxy's /readyz answers 200 (e.g. its issuer keys are loaded); throws after `ms`. */
export async function waitReady(p: TestProxy, ms = 5000, what = 'proxy not ready'): Promise<void> {
  const end = Date.now() + ms
  while ((await p.admin('/readyz')).status !== 200) {
    if (Date.now() > end) throw new Error(what)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Throw when any captured log line contains a secret used by the tests. */
export function assertNoSecretsInLogs(logs: readonly string[], extra: Iterable<string> = []): void {
  const secrets = [...usedSecrets, ...extra].filter((s) => s.length >= 6)
  for (const line of logs) {
    for (const s of secrets) {
      if (line.includes(s)) throw new Error(`a secret appeared in a log line: ${line.slice(0, 200)}`)
    }
  }
}
