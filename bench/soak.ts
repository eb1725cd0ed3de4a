/**
 * Soak run (issue 6): the real binary under a long mixed load — valid, invalid and expired
 * credentials, anonymous requests, small and large bodies both ways, clients that give up
 * mid-download, and blocked guessers — while its RSS and open file descriptors are sampled.
 * Flat lines are the result that matters; the numbers go into docs/benchmarks.md.
 *
 *   npm run build --silent && node --import tsx bench/soak.ts [--minutes 10] [--concurrency 16]
 *
 * Bounded: the load stops at the deadline, every server listens on 127.0.0.1, and the proxy is
 * stopped by its PID at the end.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { startIssuer } from '../test/helpers/issuer.ts'
import { streamBytes } from '../test/helpers/upstream.ts'

const ROOT = path.resolve(import.meta.dirname, '..')
const { values: args } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '16' }, out: { type: 'string', default: path.join(ROOT, 'bench/results/soak.md') } } })
const MINUTES = Number(args.minutes)
const CONCURRENCY = Number(args.concurrency)
const KEY = 'soak-api-key-5f0e9d8c7b6a'

function log(s: string): void {
  process.stderr.write(`[soak] ${s}\n`)
}

/** The upstream: small JSON, uploads consumed, downloads of N bytes. */
async function startUpstream(): Promise<{ url: string; close: () => void }> {
  const server = http.createServer((req, res) => {
    const m = /^\/download\/(\d+)/.exec(req.url ?? '')
    req.resume()
    req.on('end', () => {
      if (m === null) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"ok":true}')
        return
      }
      streamBytes(res, Number(m[1]))
    })
  })
  server.keepAliveTimeout = 10_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() }
}

function sample(pid: number): { rssMiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  return { rssMiB: Math.round((kb / 1024) * 10) / 10, fds: readdirSync(`/proc/${pid}/fd`).length }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-soak-'))
  const up = await startUpstream()
  const issuer = await startIssuer()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GATEHOUSE_PORT: '0',
    GATEHOUSE_ADMIN_PORT: '0',
    GATEHOUSE_LISTEN_ADDRESS: '127.0.0.1',
    GATEHOUSE_ADMIN_ADDRESS: '127.0.0.1',
    GATEHOUSE_STATE_DIR: path.join(dir, 'state'),
    GATEHOUSE_TLS_ENABLED: 'false',
    GATEHOUSE_UPSTREAM_URL: up.url,
    GATEHOUSE_LOG_LEVEL: 'info',
    AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'true',
    AUTHENTICATION_APIKEY_ENABLED: 'true',
    AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
    AUTHENTICATION_APIKEY_USERS: 'soak',
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: issuer.url,
    AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub',
  }
  delete env.GATEHOUSE_CONFIG
  mkdirSync(path.join(dir, 'state'), { recursive: true })
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/bin/gatehouse.js'), 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let access = 0
  const dataUrl = await new Promise<string>((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error('gatehouse did not start (its "gatehouse is ready" line needs log level info)'))
    }, 15_000)
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8')
      let i
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        if (line.includes('"msg":"request"')) access++
        if (line.includes('"gatehouse is ready"')) {
          clearTimeout(t)
          resolve((JSON.parse(line) as { data: string }).data)
        }
      }
    })
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d))
  })
  const pid = child.pid as number
  // Interrupted: take the proxy down with us (it is ours, by PID).
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      child.kill('SIGKILL')
      process.exit(130)
    })
  }
  log(`gatehouse pid ${pid} at ${dataUrl}; load for ${MINUTES} min with ${CONCURRENCY} clients`)

  // The pool must outlive the run: an expired pool turns honest traffic into failed credentials,
  // and the failure throttle then blocks the honest address.
  const exp = Math.floor(Date.now() / 1000) + MINUTES * 60 + 3600
  const good = await Promise.all(Array.from({ length: 50 }, (_, i) => issuer.sign({ sub: `user-${i}`, aud: 'gatehouse', exp })))
  const expired = await issuer.sign({ sub: 'late', aud: 'gatehouse', exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 7200 })
  // Valid traffic from 127.0.0.1; guessers from 127.0.0.2, which the failure throttle blocks.
  const honest = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 4_000, localAddress: '127.0.0.1' })
  const guesser = new Agent({ connections: 4, keepAliveTimeout: 4_000, localAddress: '127.0.0.2' })
  const upload = Buffer.alloc(64 * 1024, 0x62)
  const statuses = new Map<string, number>()
  let errors = 0
  let requests = 0
  let bytesDown = 0
  const count = (k: string): void => {
    statuses.set(k, (statuses.get(k) ?? 0) + 1)
  }

  async function one(): Promise<void> {
    const r = Math.random()
    const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` })
    let kind: string
    let opts: Parameters<typeof request>[1]
    let url = `${dataUrl}/v1/objects`
    let abortAfter: number | undefined
    if (r < 0.3) [kind, opts] = ['key', { headers: bearer(KEY), dispatcher: honest }]
    else if (r < 0.5) [kind, opts] = ['jwt', { headers: bearer(good[Math.floor(Math.random() * good.length)] as string), dispatcher: honest }]
    else if (r < 0.53) [kind, opts] = ['jwt-first-sight', { headers: bearer(await issuer.sign({ sub: `fresh-${requests}`, aud: 'gatehouse' })), dispatcher: honest }]
    else if (r < 0.63) [kind, opts] = ['anonymous', { dispatcher: honest }]
    else if (r < 0.71) [kind, opts] = ['invalid-key', { headers: bearer(`wrong-${Math.random().toString(36).slice(2)}`), dispatcher: guesser }]
    else if (r < 0.75) [kind, opts] = ['expired-jwt', { headers: bearer(expired), dispatcher: guesser }]
    else if (r < 0.87) [kind, opts] = ['upload-64k', { method: 'POST', headers: { ...bearer(KEY), 'content-type': 'application/octet-stream' }, body: upload, dispatcher: honest }]
    else if (r < 0.97) {
      ;[kind, opts] = ['download-1m', { headers: bearer(KEY), dispatcher: honest }]
      url = `${dataUrl}/download/${1024 * 1024}`
    } else {
      ;[kind, opts] = ['download-abandoned', { headers: bearer(KEY), dispatcher: honest }]
      url = `${dataUrl}/download/${8 * 1024 * 1024}`
      abortAfter = 256 * 1024
    }
    const ac = new AbortController()
    try {
      const res = await request(url, { ...opts, signal: ac.signal })
      count(`${kind} ${res.statusCode}`)
      let got = 0
      for await (const c of res.body) {
        got += (c as Buffer).length
        if (abortAfter !== undefined && got >= abortAfter) {
          ac.abort()
          break
        }
      }
      bytesDown += got
    } catch (e) {
      if (abortAfter === undefined) {
        errors++
        count(`${kind} error ${(e as Error).name}`)
      }
    }
    requests++
  }

  const end = Date.now() + MINUTES * 60_000
  const samples: { t: number; rssMiB: number; fds: number; requests: number }[] = []
  const t0 = Date.now()
  const take = (): void => {
    const s = sample(pid)
    samples.push({ t: Math.round((Date.now() - t0) / 1000), ...s, requests })
    log(`t=${samples.at(-1)?.t}s rss=${s.rssMiB} MiB fds=${s.fds} requests=${requests} errors=${errors}`)
  }
  take()
  const timer = setInterval(take, MINUTES >= 5 ? 30_000 : 5_000)
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < end) await one()
    }),
  )
  clearInterval(timer)
  await honest.close()
  await guesser.close()
  await new Promise((r) => setTimeout(r, 12_000)) // idle keep-alive connections close (client 5 s, upstream 10 s)
  take()
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  up.close()
  await issuer.close()
  rmSync(dir, { recursive: true, force: true })

  const afterWarm = samples.find((s) => s.t >= 60) ?? samples[1] ?? samples[0]
  const last = samples.at(-1) as (typeof samples)[number]
  const loaded = samples.slice(0, -1)
  const maxRss = Math.max(...samples.map((s) => s.rssMiB))
  // Honest traffic must only ever see 200; anything else means the run measured something else.
  const honestKinds = ['key', 'jwt', 'jwt-first-sight', 'anonymous', 'upload-64k', 'download-1m', 'download-abandoned']
  const off = [...statuses.entries()].filter(([k]) => honestKinds.includes(k.split(' ')[0] as string) && k.split(' ')[1] !== '200')
  const lines = [
    `# Soak run — ${new Date().toISOString().slice(0, 10)}`,
    '',
    `${MINUTES} min, ${CONCURRENCY} concurrent clients, plain HTTP/1.1, real binary (one process), ${requests} requests (${Math.round(requests / (MINUTES * 60))}/s), ${Math.round(bytesDown / 1024 / 1024)} MiB downloaded, ${errors} client-side errors.`,
    '',
    `RSS after warm-up (t=${afterWarm?.t}s) ${afterWarm?.rssMiB} MiB, at the end of the load ${loaded.at(-1)?.rssMiB} MiB, max ${maxRss} MiB; after the load ${last.rssMiB} MiB.`,
    `Open file descriptors: before the load ${samples[0]?.fds}, during ${Math.min(...loaded.map((s) => s.fds))}–${Math.max(...loaded.map((s) => s.fds))}, after the load and the keep-alive timeout ${last.fds}. Access lines written: ${access}.`,
    '',
    off.length === 0 ? 'Every honest request (valid key or JWT, anonymous) got 200; guessers got 401 until the failure throttle answered 429.' : `WARNING: honest requests failed: ${off.map(([k, v]) => `${k} ×${v}`).join(', ')}`,
    '',
    '| t (s) | RSS (MiB) | open FDs | requests so far |',
    '| ---: | ---: | ---: | ---: |',
    ...samples.map((s) => `| ${s.t} | ${s.rssMiB} | ${s.fds} | ${s.requests} |`),
    '',
    '| request kind and status | count |',
    '| --- | ---: |',
    ...[...statuses.entries()].sort().map(([k, v]) => `| ${k} | ${v} |`),
    '',
  ]
  writeFileSync(args.out as string, lines.join('\n'))
  process.stdout.write(lines.join('\n'))
}

main().catch((e: unknown) => {
  process.stderr.write(`[soak] failed: ${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
