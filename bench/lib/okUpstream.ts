/**
 * An upstream that is never the bottleneck, in the harness process: every request gets a fixed
 * 2-byte answer on a keep-alive connection. Used by the in-repo benchmarks (bench/run.ts,
 * bench/metrics.ts, bench/redis.ts) that compare gatehouse with itself.
 */
import http from 'node:http'
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
