/**
 * A minimal Node pass-through: node:http in front of an undici Pool with keep-alive, streaming
 * both ways, hop-by-hop headers dropped, no authentication and no logging. The floor for any
 * Node proxy.
 *
 * Environment: PORT, UPSTREAM_URL, and TLS_CERT_FILE + TLS_KEY_FILE for HTTPS. Run by
 * bench/peers.ts (transpiled, plain node, pinned to one core).
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { Pool } from 'undici'

const env = process.env
const pool = new Pool(env.UPSTREAM_URL as string, { connections: 256, pipelining: 1, keepAliveTimeout: 300_000 })
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

function strip(h: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const k in h) {
    const v = h[k]
    if (v !== undefined && !HOP.has(k)) out[k] = v
  }
  return out
}

const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
  pool.stream(
    { path: req.url ?? '/', method: req.method as 'GET', headers: strip(req.headers), body: hasBody ? req : null },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers))
      return res
    },
    (err) => {
      if (err === null) return
      if (!res.headersSent) {
        res.writeHead(502)
        res.end()
      } else res.destroy()
    },
  )
}
const server =
  env.TLS_CERT_FILE !== undefined && env.TLS_CERT_FILE !== ''
    ? https.createServer({ cert: readFileSync(env.TLS_CERT_FILE), key: readFileSync(env.TLS_KEY_FILE as string) }, listener)
    : http.createServer(listener)
server.keepAliveTimeout = 300_000
server.listen(Number(env.PORT), '127.0.0.1')
