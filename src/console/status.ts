/**
 * Facts for the status page: readiness (the checks of `/readyz`), listeners, the OIDC issuers
 * and the age of their keys, and whether the upstream accepts a TCP connection — a bounded
 * check (1.5 s, remembered for 5 s) that sends no request, so it never authenticates, changes
 * or logs anything upstream.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import type { JwksStatus } from '../auth/oidc/jwksCache.ts'
import type { StatusView } from './pages.ts'

/** What the admin listener knows about the running server (a narrow view of its readiness). */
export interface ServerFacts {
  readonly listeners: boolean
  readonly state: boolean
  readonly draining: boolean
  readonly issuers: readonly JwksStatus[]
  /** The listeners' URLs once they are bound. */
  readonly urls: { readonly data?: string | undefined; readonly admin?: string | undefined; readonly grpc?: string | undefined }
  readonly tls: string
  readonly upstreamUrl: string
  readonly localUsers: number
}

const PROBE_TIMEOUT_MS = 1500
const PROBE_CACHE_MS = 5000

let cachedVersion: string | undefined

/** gatehouse's version (package.json: two levels up from src/console and from dist/console). */
export function version(): string {
  if (cachedVersion !== undefined) return cachedVersion
  try {
    cachedVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    cachedVersion = 'unknown'
  }
  return cachedVersion
}

/** "3 min ago" for an ISO time, relative to `now`. */
export function age(iso: string | undefined, now: number): string {
  if (iso === undefined) return 'never'
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return 'unknown'
  const s = Math.max(0, Math.round((now - t) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`
  return `${Math.floor(s / 86_400)} d ago`
}

/** The upstream URL without user info, query or fragment (never show a secret from the config). */
export function displayUrl(u: string): string {
  try {
    const x = new URL(u)
    if (x.protocol === 'echo:') return 'echo: (built-in echo upstream)'
    return `${x.protocol}//${x.host}${x.pathname === '/' ? '' : x.pathname}`
  } catch {
    return '(not a URL)'
  }
}

type Probe = { readonly state: 'reachable' | 'unreachable' | 'builtin'; readonly detail: string }
const probes = new Map<string, { at: number; result: Promise<Probe> }>()

/** Whether the upstream accepts a TCP connection within 1.5 s (remembered for 5 s). */
export function probeUpstream(url: string, now: number = Date.now()): Promise<Probe> {
  const hit = probes.get(url)
  if (hit !== undefined && now - hit.at < PROBE_CACHE_MS) return hit.result
  const result = connect(url)
  probes.clear() // one upstream at a time; a reload with another URL drops the old entry
  probes.set(url, { at: now, result })
  return result
}

function connect(url: string): Promise<Probe> {
  let x: URL
  try {
    x = new URL(url)
  } catch {
    return Promise.resolve({ state: 'unreachable', detail: 'the URL does not parse' })
  }
  if (x.protocol === 'echo:') return Promise.resolve({ state: 'builtin', detail: 'the built-in echo upstream answers every request' })
  const port = Number(x.port || (x.protocol === 'https:' ? 443 : 80))
  const host = x.hostname.replace(/^\[(.*)\]$/, '$1')
  const start = Date.now()
  return new Promise((resolve) => {
    const s = net.connect({ host, port })
    const done = (p: Probe): void => {
      s.destroy()
      clearTimeout(timer)
      resolve(p)
    }
    const timer = setTimeout(() => done({ state: 'unreachable', detail: `no TCP connection within ${PROBE_TIMEOUT_MS / 1000} s` }), PROBE_TIMEOUT_MS)
    s.once('connect', () => done({ state: 'reachable', detail: `TCP connection in ${Date.now() - start} ms` }))
    s.once('error', (e: NodeJS.ErrnoException) => done({ state: 'unreachable', detail: `TCP connection failed (${e.code ?? 'error'})` }))
  })
}

/** Assemble the status page's view. */
export async function statusView(f: ServerFacts, now: number = Date.now()): Promise<StatusView> {
  const issuersReady = f.issuers.every((i) => i.ready)
  const checks = [
    { name: 'Listeners', ok: f.listeners, detail: f.listeners ? 'bound and accepting' : 'starting' },
    { name: 'State store', ok: f.state, detail: f.state ? 'open' : 'not open' },
    { name: 'Draining', ok: !f.draining, detail: f.draining ? 'shutting down' : 'not draining' },
    { name: 'OIDC issuer keys', ok: issuersReady, detail: f.issuers.length === 0 ? 'none configured' : issuersReady ? 'every issuer has keys' : 'an issuer has no keys yet' },
  ]
  const listeners = [
    { name: 'Data listener', url: f.urls.data ?? '(not bound yet)' },
    { name: 'Admin listener', url: f.urls.admin ?? '(not bound yet)' },
    ...(f.urls.grpc === undefined ? [] : [{ name: 'gRPC listener', url: f.urls.grpc }]),
  ]
  const up = await probeUpstream(f.upstreamUrl, now)
  return {
    version: version(),
    ready: checks.every((c) => c.ok),
    checks,
    listeners,
    tls: f.tls,
    issuers: f.issuers.map((i) => ({ issuer: i.issuer, ready: i.ready, keys: i.keys, age: age(i.lastSuccess, now), lastError: i.lastError })),
    upstream: { url: displayUrl(f.upstreamUrl), ...up },
    localUsers: f.localUsers,
  }
}
