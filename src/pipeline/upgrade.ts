/**
 * WebSocket upgrades (RFC 6455) on the data listener. The upgrade request runs the same stages
 * as any request — request id, target, credential, classify, authenticate, authorize, strip +
 * inject — before a single byte goes upstream. A refused upgrade gets the JSON error of SPEC §9
 * and the socket is closed; no tunnel exists.
 *
 * Upstream, the request is sent with the upgrade headers put back (they are hop-by-hop and were
 * stripped). The client and upstream sockets are joined only when the upstream answers
 * `101 Switching Protocols` with `Upgrade: websocket` and the `Sec-WebSocket-Accept` that matches
 * the client's key; any other answer is relayed as a plain response and the connection closed.
 *
 * Other upgrades (`Upgrade: h2c`, `TLS/1.0`…) are not performed: a request without a body is
 * served as an ordinary request (the Upgrade header is ignored, as RFC 9110 §7.8 allows).
 */
import { createHash, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { rootCertificates } from 'node:tls'
import { extractCredential } from '../auth/extract.ts'
import type { Principal } from '../http/principal.ts'
import type { Runtime } from './runtime.ts'
import { errorBody, GatehouseError } from '../errors.ts'
import { writeAccess, type Logger } from '../log.ts'
import { PROTOCOL, type Metrics } from '../metrics/metrics.ts'
import { clientKey } from '../auth/throttle.ts'
import { requestHasBody, translate } from '../upstream/forward.ts'
import { HOP_BY_HOP } from '../http/hop.ts'
import type { OutboundTrust } from '../upstream/trust.ts'
import { sessionAllowed } from '../browser/site.ts'
import { authenticateRequest, servicesOf } from './session.ts'
import type { ServeState } from './handler.ts'
import { headerObject, upstreamHeaders } from '../http/headers.ts'
import { asGatehouseError } from '../http/respond.ts'
import { parseTarget } from '../http/target.ts'
import { refuseUnforwardable } from '../http/methods.ts'

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export interface UpgradeDeps {
  readonly live: () => { readonly runtime: Runtime }
  readonly logger: Logger
  readonly state: ServeState
  /** The ordinary request handler, for upgrades that are not WebSocket. */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void
  readonly trust?: OutboundTrust | undefined
  /** Counted where the access line is written; undefined when metrics are off. */
  readonly metrics?: Metrics | undefined
}

export interface UpgradeHandler {
  /** The data server's `upgrade` listener. */
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Close every open tunnel (end of the drain). */
  closeAll(): void
}


/** The expected `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2). */
export function websocketAccept(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64')
}

/** Build the upgrade handler. */
export function createUpgradeHandler(deps: UpgradeDeps): UpgradeHandler {
  const { logger, state, metrics } = deps
  const tunnels = new Set<Duplex>()
  let caCache: { file: string | undefined; extra: string | undefined; ca: string[] | undefined } | undefined

  const caFor = (rt: Runtime): string[] | undefined => {
    const file = rt.config.upstream.caFile
    const extra = deps.trust?.extraCa
    if (caCache === undefined || caCache.file !== file || caCache.extra !== extra) {
      const list = [file === undefined ? undefined : readFileSync(file, 'utf8'), extra].filter((x): x is string => x !== undefined)
      caCache = { file, extra, ca: list.length === 0 ? undefined : [...rootCertificates, ...list] }
    }
    return caCache.ca
  }

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase()
    if (upgrade !== 'websocket') {
      plainRequest(req, socket, head, deps.handler)
      return
    }
    const { runtime: rt } = deps.live()
    const start = process.hrtime.bigint()
    // Read now: a destroyed socket no longer knows its peer when the access line is written.
    const client = clientKey(req.socket.remoteAddress, req.headers['x-forwarded-for'], rt.trustedProxies)
    const given = req.headers[rt.config.identityHeaders.requestId.toLowerCase()]
    const requestId = typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID()
    let path: string | undefined
    let principal: Principal | undefined
    let status = 0
    let reason: string | undefined
    let detail: string | undefined
    let upstreamStatus: number | undefined
    let upstreamMs: number | undefined
    let hadCredential = false
    state.inflight++
    socket.on('error', () => socket.destroy())
    socket.once('close', () => {
      state.inflight--
      tunnels.delete(socket)
      if (metrics !== undefined) {
        metrics.request(PROTOCOL.websocket, status, principal?.method, reason, principal !== undefined, false, rt.config.upstream.profile, Number(process.hrtime.bigint() - start) / 1e9, upstreamMs === undefined ? undefined : upstreamMs / 1e3)
      }
      if (!rt.config.log.access) return
      writeAccess(logger, {
        requestId,
        method: req.method,
        path: path ?? '(invalid)',
        status,
        durationMs: Math.round(Number(process.hrtime.bigint() - start) / 1e3) / 1e3,
        authMethod: principal?.method,
        user: principal?.user,
        reason,
        detail,
        upstreamStatus,
        aborted: undefined,
        client,
      })
    })

    const refuse = (e: GatehouseError): void => {
      status = e.status
      reason = e.code
      detail = e.detail
      writeRawError(socket, e, requestId, hadCredential)
    }

    const run = async (): Promise<void> => {
      if (state.draining) throw new GatehouseError('ERR_DRAINING')
      refuseUnforwardable(req.method)
      if (req.method !== 'GET') throw new GatehouseError('ERR_UPGRADE_UNSUPPORTED', { detail: `WebSocket upgrade with ${String(req.method)}` })
      // 2 · target
      const target = parseTarget(req.url ?? '/')
      path = target.path
      // 4 · credential
      const { credential, query } = extractCredential(req, target.query, rt.extract)
      hadCredential = credential !== undefined
      // 6a · classify: the handshake is a GET, judged like one
      const classification = rt.profile.classify('GET', target.path)
      // 5 · authenticate
      // (without a credential, a browser session cookie counts, as for any request)
      const authn = authenticateRequest(rt, 'GET', req.headers, credential, classification.access, () => ({ remoteAddress: req.socket.remoteAddress, forwardedFor: req.headers['x-forwarded-for'], logger }), servicesOf(deps.handler), (why) => {
        detail = `session ${why}`
      })
      principal = authn instanceof Promise ? await authn : authn
      // A handshake carried by a session cookie must come from a page of this origin: browsers
      // send cookies with a WebSocket handshake from any page of the same site, and a WebSocket
      // is not bound by CORS (cross-site WebSocket hijacking).
      if (credential === undefined && principal.method !== 'anonymous' && rt.browser !== undefined && !sessionAllowed('GET', req.headers, rt.browser.settings.proto, rt.browser.settings.redirectUrl, true)) throw new GatehouseError('ERR_FORBIDDEN', { detail: 'session WebSocket handshake from another origin' })
      if (principal.mustChangePassword === true) throw new GatehouseError('ERR_PASSWORD_CHANGE_REQUIRED')
      // 6b · authorize
      const decision = rt.adminList.decide(principal, classification.access)
      if (!decision.allowed) throw new GatehouseError('ERR_FORBIDDEN', { detail: decision.rule })
      const upstreamUrl = rt.config.upstream.url
      if (upstreamUrl === 'echo:') throw new GatehouseError('ERR_UPGRADE_UNSUPPORTED', { detail: 'the echo upstream does not speak WebSocket' })
      if (socket.destroyed) return
      // 3 + 7 · strip, then inject; then put the upgrade itself back (hop-by-hop, stripped above)
      const headers = headerObject(upstreamHeaders(req, rt.headers, { principal, requestId, proto: rt.proto }))
      headers.connection = 'Upgrade'
      headers.upgrade = 'websocket'
      const base = new URL(upstreamUrl)
      const basePath = base.pathname.replace(/\/+$/, '')
      const isTls = base.protocol === 'https:'
      const ca = isTls ? caFor(rt) : undefined
      const t = rt.config.upstream.timeouts
      const sent = metrics === undefined ? 0 : performance.now()
      const upReq = (isTls ? https : http).request({
        protocol: base.protocol,
        hostname: base.hostname.replace(/^\[|\]$/g, ''),
        port: base.port === '' ? undefined : Number(base.port),
        method: 'GET',
        path: `${basePath}${target.path}${query === '' ? '' : `?${query}`}`,
        headers,
        agent: false,
        ...(ca === undefined ? {} : { ca }),
        timeout: t.connect,
      })
      // The client leaving before the upstream answered: stop the upstream exchange.
      const abortUp = (): void => {
        upReq.destroy()
      }
      socket.once('close', abortUp)
      const headersTimer = setTimeout(() => upReq.destroy(Object.assign(new Error('headers timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' })), t.headers)
      upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })))
      upReq.on('error', (e) => {
        clearTimeout(headersTimer)
        if (status !== 0) return
        refuse(translate(e))
      })
      upReq.on('response', (res) => {
        // Not an upgrade: relay the answer as an ordinary response, then close. No tunnel.
        clearTimeout(headersTimer)
        socket.off('close', abortUp)
        upstreamStatus = res.statusCode
        if (metrics !== undefined) upstreamMs = performance.now() - sent
        status = res.statusCode ?? 502
        relayPlain(res, socket, requestId)
      })
      upReq.on('upgrade', (res, upSocket, upHead) => {
        clearTimeout(headersTimer)
        socket.off('close', abortUp)
        upstreamStatus = res.statusCode
        if (metrics !== undefined) upstreamMs = performance.now() - sent
        const key = String(req.headers['sec-websocket-key'] ?? '')
        const confirmed = res.statusCode === 101 && String(res.headers.upgrade ?? '').toLowerCase() === 'websocket' && res.headers['sec-websocket-accept'] === websocketAccept(key)
        if (!confirmed || socket.destroyed) {
          upSocket.destroy()
          if (!socket.destroyed) refuse(new GatehouseError('ERR_UPSTREAM_BAD_RESPONSE', { detail: `upgrade not confirmed by the upstream (status ${res.statusCode})` }))
          return
        }
        status = 101
        let out = 'HTTP/1.1 101 Switching Protocols\r\n'
        for (let i = 0; i < res.rawHeaders.length; i += 2) out += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`
        out += `X-Request-Id: ${requestId}\r\n\r\n`
        socket.write(out)
        if (upHead.length > 0) socket.write(upHead)
        if (head.length > 0) upSocket.write(head)
        tunnels.add(socket)
        upSocket.on('error', () => socket.destroy())
        socket.on('error', () => upSocket.destroy())
        upSocket.once('close', () => socket.destroy())
        socket.once('close', () => upSocket.destroy())
        upSocket.pipe(socket)
        socket.pipe(upSocket)
      })
      upReq.end()
    }
    run().catch((e: unknown) => refuse(asGatehouseError(e)))
  }

  return {
    onUpgrade,
    closeAll() {
      for (const s of tunnels) s.destroy()
      tunnels.clear()
    },
  }
}

/** Write gatehouse's JSON error as a raw HTTP/1.1 response and close the socket. */
function writeRawError(socket: Duplex, e: GatehouseError, requestId: string, hadCredential: boolean): void {
  if (socket.destroyed) return
  const body = JSON.stringify(errorBody(e, requestId))
  let head = `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n`
  if (e.status === 401) head += `WWW-Authenticate: ${hadCredential || e.code === 'ERR_INVALID_TOKEN' ? 'Bearer realm="gatehouse", error="invalid_token"' : 'Bearer realm="gatehouse"'}\r\n`
  if (e.headers !== undefined) for (const [k, v] of Object.entries(e.headers)) head += `${k}: ${v}\r\n`
  socket.end(`${head}\r\n${body}`)
}

/** Relay an upstream's non-101 answer to an upgrade as a plain response, then close. */
function relayPlain(res: IncomingMessage, socket: Duplex, requestId: string): void {
  let head = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`
  const conn = String(res.headers.connection ?? '').toLowerCase()
  const named = new Set(conn.split(',').map((s) => s.trim()))
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const k = (res.rawHeaders[i] as string).toLowerCase()
    // Framing is ours now: the body is sent as it arrives and the connection closes after it.
    if (HOP_BY_HOP.has(k) || named.has(k) || k === 'content-length' || k === 'x-request-id') continue
    head += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`
  }
  head += `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n`
  socket.write(head)
  res.pipe(socket)
  res.on('error', () => socket.destroy())
}

/** An upgrade we do not perform (not WebSocket): serve it as an ordinary request when it has no body. */
function plainRequest(req: IncomingMessage, socket: Duplex, head: Buffer, handler: (req: IncomingMessage, res: ServerResponse) => void): void {
  socket.on('error', () => socket.destroy())
  if (requestHasBody(req) || head.length > 0) {
    writeRawError(socket, new GatehouseError('ERR_UPGRADE_UNSUPPORTED', { detail: `Upgrade: ${String(req.headers.upgrade).slice(0, 40)} with a body` }), randomUUID(), false)
    return
  }
  const res = new http.ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket as Socket)
  res.once('finish', () => {
    res.detachSocket(socket as Socket)
    socket.end()
  })
  res.once('close', () => socket.destroy())
  handler(req, res)
}
