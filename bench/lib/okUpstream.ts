/**
 * An upstream that is never the bottleneck, in the harness process: every request gets a fixed
 * 2-byte answer on a keep-alive connection. Used by the in-repo benchmarks (bench/run.ts,
 * bench/metrics.ts, bench/redis.ts) that compare gatehouse with itself.
 */
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startIssuer } from '../../test/helpers/issuer.ts'
import type { AddressInfo } from 'node:net'

/** Start it on 127.0.0.1 and a free port. */
export async function startOkUpstream(): Promise<{ url: string; server: http.Server; close(): void }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 })
    res.end('ok')
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, close: () => server.close() }
}

/**
 * What the self-comparing benchmarks share: the fixed-answer upstream, a JWT issuer with one
 * signed token, an API key, a scratch directory, and the base environment of a candidate.
 */
export async function startSelfBench(dirPrefix: string): Promise<{
  upstream: Awaited<ReturnType<typeof startOkUpstream>>
  issuer: Awaited<ReturnType<typeof startIssuer>>
  jwt: string
  key: string
  dir: string
  base: Record<string, string>
}> {
  // An upstream that is never the bottleneck: a fixed small answer, keep-alive.
  const upstream = await startOkUpstream()
  const issuer = await startIssuer({ audience: 'gatehouse' })
  const jwt = await issuer.sign({ email: 'bench@example.com', groups: ['g'], exp: Math.floor(Date.now() / 1000) + 3600 })
  const dir = mkdtempSync(path.join(tmpdir(), dirPrefix))
  const base = { GATEHOUSE_UPSTREAM_URL: upstream.url, GATEHOUSE_TLS_ENABLED: 'false', GATEHOUSE_LOG_LEVEL: 'info' }
  return { upstream, issuer, jwt, key: 'bench-api-key-0123456789', dir, base }
}
