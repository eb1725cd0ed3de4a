/**
 * "What a Node user writes": node:http + http-proxy, and jose's jwtVerify with a remote JWKS on
 * every request (iss, aud and the algorithm pinned), 401 otherwise; the token's sub goes upstream
 * as X-Forwarded-User. No logging, no header hygiene beyond that.
 *
 * Environment: PORT, UPSTREAM_URL, ISSUER, AUDIENCE, JWKS_URL, and TLS_CERT_FILE + TLS_KEY_FILE
 * for HTTPS. Run by bench/peers.ts (transpiled, plain node, pinned to one core).
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import httpProxy from 'http-proxy'
import { createRemoteJWKSet, jwtVerify } from 'jose'

const env = process.env
const jwks = createRemoteJWKSet(new URL(env.JWKS_URL as string))
const proxy = httpProxy.createProxyServer({ target: env.UPSTREAM_URL, agent: new http.Agent({ keepAlive: true, maxSockets: 256 }) })
proxy.on('error', (_err, _req, res) => {
  if (res instanceof http.ServerResponse && !res.headersSent) {
    res.writeHead(502)
    res.end()
  } else res.destroy()
})

function deny(res: http.ServerResponse): void {
  res.writeHead(401, { 'www-authenticate': 'Bearer', 'content-length': 0 })
  res.end()
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const h = req.headers.authorization
  if (h === undefined || !h.startsWith('Bearer ')) return deny(res)
  try {
    const { payload } = await jwtVerify(h.slice(7), jwks, { issuer: env.ISSUER, audience: env.AUDIENCE, algorithms: ['RS256'] })
    req.headers['x-forwarded-user'] = String(payload.sub)
  } catch {
    return deny(res)
  }
  proxy.web(req, res)
}

const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => void handle(req, res)
const server =
  env.TLS_CERT_FILE !== undefined && env.TLS_CERT_FILE !== ''
    ? https.createServer({ cert: readFileSync(env.TLS_CERT_FILE), key: readFileSync(env.TLS_KEY_FILE as string) }, listener)
    : http.createServer(listener)
server.keepAliveTimeout = 300_000
server.listen(Number(env.PORT), '127.0.0.1')
