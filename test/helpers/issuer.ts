/**
 * A real OpenID issuer for tests: plain HTTP on 127.0.0.1:0, serving discovery, a JWKS and a
 * client_credentials token endpoint, with keys that tests can add, rotate, unpublish and sign
 * with, builders for the classic forged-token attacks, fault switches for the IdP misbehaving,
 * per-endpoint hit counters, and a stop()/start() outage that keeps the port.
 *
 *   GET  <issuer>/.well-known/openid-configuration   discovery document
 *   GET  <issuer>/jwks                               { keys: [...published public keys] }
 *   POST <issuer>/token                              client_credentials (basic or post auth)
 *
 * The issuer URL is `http://127.0.0.1:<port>` plus `opts.path` when given (e.g. `/realms/test`).
 */
import { createHmac, generateKeyPairSync, KeyObject, randomBytes, sign as nodeSign, constants } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'

/** The JWS algorithms the issuer can hold keys for. */
export type SigningAlg =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA'
  | 'Ed25519'

/** Which endpoints a fault switch applies to. `all` = discovery, JWKS and token. */
export type FaultTarget = 'all' | 'discovery' | 'jwks' | 'token'

/** JWT claims; a key set to `undefined` is left out of the token (e.g. `{ exp: undefined }`). */
export type Claims = Record<string, unknown>

/** Options for {@link startIssuer}. */
export interface IssuerOptions {
  /** Path appended to the origin to form the issuer URL, e.g. `/realms/test`. Default: none. */
  path?: string
  /** Default `aud` for {@link TestIssuer.sign} and for client_credentials tokens. Default `gatehouse`. */
  audience?: string
  /** client_id → client_secret accepted by the token endpoint. Default `{ 'test-client': 'test-secret' }`. */
  clients?: Record<string, string>
  /** Lifetime in seconds of client_credentials tokens (`expires_in`, `exp`). Default 300. */
  tokenTtl?: number
  /** Extra claims put into every client_credentials token (e.g. `{ groups: ['admins'] }`). */
  tokenClaims?: Claims
  /** The first key. Default: RS256, 2048 bits, published, signing. */
  initialKey?: { alg?: SigningAlg } & AddKeyOptions
}

/** Options for {@link IssuerKeys.addKey}. */
export interface AddKeyOptions {
  /** Whether the public key appears in the JWKS. Default true. */
  publish?: boolean
  /** Key id. Default: `key-<n>-<alg>`. */
  kid?: string
  /** RSA modulus bits. Default 2048. Below 2048 the key is made with node:crypto (jose refuses). */
  modulusLength?: number
}

/** What {@link IssuerKeys.list} tells about one key. */
export interface KeyInfo {
  kid: string
  alg: SigningAlg
  /** `RSA`, `EC` or `OKP`. */
  kty: string
  /** Whether the public key is in the JWKS. */
  published: boolean
  /** Whether this is the key {@link TestIssuer.sign} uses by default. */
  signing: boolean
  /** RSA modulus length in bits (RSA keys only). */
  modulusLength?: number
  /** Curve (EC / OKP keys only). */
  crv?: string
}

/** Key management of a {@link TestIssuer}. Every key keeps its private half, published or not. */
export interface IssuerKeys {
  /** Generate a key; returns its kid. It does not become the signing key (see {@link rotate}). */
  addKey(alg?: SigningAlg, opts?: AddKeyOptions): Promise<string>
  /** Unpublish a key: it leaves the JWKS but can still sign (`sign(c, { kid })`). Throws on an unknown kid. */
  removeKey(kid: string): void
  /** Put an unpublished key (back) into the JWKS. */
  publish(kid: string): void
  /** Make `kid` the default signing key (published or not). */
  setSigningKey(kid: string): void
  /** Add a new published key of `alg` (default: the current signer's alg) and make it the signer; returns its kid. */
  rotate(alg?: SigningAlg): Promise<string>
  /** The kid {@link TestIssuer.sign} uses by default. */
  readonly signingKid: string
  /** All keys, published or not, in creation order. */
  list(): KeyInfo[]
  /** The public JWK of a key as the JWKS serves it (`kid`, `alg`, `use: 'sig'`). */
  publicJwk(kid: string): JWK
  /** The JWKS document as served right now. */
  jwks(): { keys: JWK[] }
  /** The PRIVATE JWK of a key (with `d`, `p`, `q`, …), for tests of an issuer that leaks it. */
  privateJwk(kid: string): JWK
}

/** Options for {@link TestIssuer.sign}. */
export interface SignOptions {
  /** Sign with this key (published or not) instead of the signing key. */
  kid?: string
  /** `aud` when the claims do not set it. Default: the issuer's audience. */
  audience?: string
  /**
   * Extra or replacing protected-header fields (e.g. `jwk`, `jku`, `kid`, `typ`); `undefined` drops
   * one. A `header.alg` acts like {@link SignOptions.alg}.
   */
  header?: Record<string, unknown>
  /**
   * Header `alg` and the algorithm actually used, when it differs from the key's own alg (e.g.
   * `PS256` with an RS256 key, `RS512` with an RS256 key). Signed with node:crypto, as jose refuses.
   */
  alg?: string
}

/** Fault switches; settable at any time, read on every request. */
export interface IssuerFaults {
  /** Destroy the connection as soon as a request arrives (no HTTP response at all). */
  down: boolean
  /** Delay every affected response by this many milliseconds (0 = off). */
  slowMs: number
  /** Answer 500 `{"error":"server_error"}`. */
  status500: boolean
  /** Answer 200 with `content-type: application/json` and a body that is not JSON. */
  garbage: boolean
  /**
   * Answer 200 with a body of exactly this many bytes (0 = off), streamed in 64 KiB chunks with
   * backpressure and never allocated whole; it stops when the client disconnects. The body is
   * `{"keys":[` + spaces + `]}` — valid JSON, so only a size cap can reject it.
   */
  hugeBytes: number
  /** Send `content-length` with the huge body (default false: chunked, so the size is unknown up front). */
  hugeContentLength: boolean
  /** Which endpoints the switches affect. Default `all`. */
  target: FaultTarget
}

/** Per-endpoint request counters (every arriving request counts, faulted or not). */
export interface IssuerHits {
  discovery: number
  jwks: number
  token: number
}

/**
 * Forged or malformed tokens an attacker could send. Claims default as in {@link TestIssuer.sign}
 * (valid `iss`, `aud`, `sub`, `iat`, `exp`), so the attack itself is the only thing wrong.
 */
export interface IssuerAttacks {
  /** `alg: none` with the signing key's kid and an empty signature (`header.payload.`). */
  unsignedAlgNone(claims?: Claims): string
  /**
   * Alg confusion: HS256 whose HMAC key is the bytes of the signing RSA key's public key (or the
   * first published RSA key when the signer is not RSA), with that key's kid. `material` picks the
   * bytes: SPKI PEM (default), PKCS#1 PEM, or the JWK JSON exactly as the JWKS serves it.
   */
  hs256WithPublicKey(claims?: Claims, material?: 'spki' | 'pkcs1' | 'jwk'): string
  /**
   * RS256 by a key that is not in the JWKS. Its kid is fresh by default; pass a published kid to
   * forge a token that names a real key but was signed by another.
   */
  signWithUnpublishedKey(claims?: Claims, kid?: string): Promise<string>
  /**
   * RS256 by an attacker key whose public JWK is embedded in the `jwk` header, with `jku`
   * pointing at an attacker URL (default `https://attacker.invalid/jwks.json`).
   */
  withEmbeddedJwk(claims?: Claims, jku?: string): Promise<string>
  /** The same token with one signature byte flipped. */
  corruptSignature(token: string): string
  /**
   * RS256 by a 1024-bit RSA key that IS published in the JWKS (kid `weak-rsa-1024`, added on the
   * first call), so only a key-size check rejects it.
   */
  weakRsa(claims?: Claims): Promise<string>
  /** A token validly signed by the signing key, padded with a `pad` claim to at least `bytes` characters. */
  oversized(claims: Claims | undefined, bytes: number): Promise<string>
}

/** A running test issuer. */
export interface TestIssuer {
  /** The issuer URL (`iss`): `http://127.0.0.1:<port>[path]`, no trailing slash. */
  readonly url: string
  /** `<issuer>/jwks`. */
  readonly jwksUrl: string
  /** `<issuer>/.well-known/openid-configuration`. */
  readonly discoveryUrl: string
  /** `<issuer>/token`. */
  readonly tokenUrl: string
  /** The TCP port; the same across stop()/start(). */
  readonly port: number
  /** Whether the port is listening (false between stop() and start()). */
  readonly listening: boolean
  /** Key management. */
  readonly keys: IssuerKeys
  /** Fault switches; assign fields at any time. */
  readonly faults: IssuerFaults
  /** Request counters. */
  readonly hits: IssuerHits
  /** Fields merged over the discovery document (e.g. `{ issuer: 'http://evil' }`); `undefined` drops one. */
  discoveryOverrides: Record<string, unknown>
  /** When set, the JWKS endpoint serves exactly this document (e.g. `{ keys: [] }`) instead of the published keys. */
  jwksOverride: unknown
  /** Attack token builders. */
  readonly attacks: IssuerAttacks
  /**
   * Sign a JWT. Claims default to `iss` = issuer URL, `aud` = audience, `sub` = `test-user`,
   * `iat` = now, `exp` = now + 300; given claims replace them, and a claim given as `undefined` is
   * left out. Header: `{ alg, kid, typ: 'JWT', ...opts.header }`.
   */
  sign(claims?: Claims, opts?: SignOptions): Promise<string>
  /** Zero the hit counters. */
  resetHits(): void
  /** Turn every fault switch off and target back to `all`. */
  resetFaults(): void
  /** Close the port (connections destroyed) to simulate an outage; the port is kept for start(). */
  stop(): Promise<void>
  /** Listen again on the same port after stop(). */
  start(): Promise<void>
  /** Tear down for good. */
  close(): Promise<void>
}

interface KeyEntry {
  kid: string
  alg: SigningAlg
  /** jose signing key; absent for keys jose refuses (RSA below 2048 bits). */
  cryptoKey: CryptoKey | undefined
  privateKey: KeyObject
  publicKey: KeyObject
  jwk: JWK
  published: boolean
  modulusLength: number | undefined
}

const DEFAULT_ATTACKER_JKU = 'https://attacker.invalid/jwks.json'

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')

/** Drop keys whose value is undefined. */
function defined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v
  return out
}

/** Sign `input` for a JWS `alg` with node:crypto (for what jose will not do). */
function rawSign(alg: string, key: KeyObject | string | Buffer, input: string): Buffer {
  const data = Buffer.from(input)
  const m = /^(HS|RS|PS|ES)(256|384|512)$/.exec(alg)
  if (m !== null) {
    const hash = `sha${m[2]}`
    if (m[1] === 'HS') return createHmac(hash, key).update(data).digest()
    if (!(key instanceof KeyObject)) throw new TypeError(`${alg} needs a KeyObject`)
    if (m[1] === 'RS') return nodeSign(hash, data, key)
    if (m[1] === 'PS') return nodeSign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(m[2]) / 8 })
    return nodeSign(hash, data, { key, dsaEncoding: 'ieee-p1363' })
  }
  if (alg === 'EdDSA' || alg === 'Ed25519') {
    if (!(key instanceof KeyObject)) throw new TypeError(`${alg} needs a KeyObject`)
    return nodeSign(null, data, key)
  }
  throw new TypeError(`cannot sign with alg ${alg}`)
}

/** Encode and sign a compact JWS with node:crypto. */
function rawJwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject | string | Buffer): string {
  const input = `${b64json(defined(header))}.${b64json(defined(payload))}`
  return `${input}.${rawSign(String(header.alg), key, input).toString('base64url')}`
}

/** The same token with one signature byte flipped (pure; works on any compact JWS). */
export function corruptSignature(token: string): string {
  const parts = token.split('.')
  if (parts.length !== 3) throw new TypeError('not a compact JWS')
  const sig = Buffer.from(parts[2] ?? '', 'base64url')
  if (sig.length === 0) return `${parts[0]}.${parts[1]}.AAAA`
  const i = sig.length >> 1
  sig[i] = (sig[i] ?? 0) ^ 0xff
  return `${parts[0]}.${parts[1]}.${sig.toString('base64url')}`
}

/** Make a key pair; jose for what it supports, node:crypto for weak RSA. */
async function makeKey(alg: SigningAlg, kid: string, opts: AddKeyOptions): Promise<KeyEntry> {
  const isRsa = alg.startsWith('RS') || alg.startsWith('PS')
  const bits = isRsa ? (opts.modulusLength ?? 2048) : undefined
  let cryptoKey: CryptoKey | undefined
  let privateKey: KeyObject
  let publicKey: KeyObject
  let raw: JWK
  if (bits !== undefined && bits < 2048) {
    const kp = generateKeyPairSync('rsa', { modulusLength: bits })
    privateKey = kp.privateKey
    publicKey = kp.publicKey
    raw = publicKey.export({ format: 'jwk' }) as JWK
  } else {
    const kp = await generateKeyPair(alg, { extractable: true, ...(bits !== undefined ? { modulusLength: bits } : {}) })
    cryptoKey = kp.privateKey
    privateKey = KeyObject.from(kp.privateKey)
    publicKey = KeyObject.from(kp.publicKey)
    raw = await exportJWK(kp.publicKey)
  }
  const { kty, crv, n, e, x, y } = raw
  const jwk = defined({ kty, kid, alg, use: 'sig', crv, n, e, x, y }) as JWK
  return { kid, alg, cryptoKey, privateKey, publicKey, jwk, published: opts.publish ?? true, modulusLength: bits }
}

/**
 * The environment that has gatehouse accept this issuer's JWTs (client id `gatehouse`, the user
 * name from `email`) in front of `up`; `extra` adds or overrides variables.
 */
export function oidcEnv(issuer: { readonly url: string }, up: { readonly url: string }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    GATEHOUSE_UPSTREAM_URL: up.url,
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: issuer.url,
    AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'email',
    ...extra,
  }
}

/**
 * Start a test issuer on 127.0.0.1 (a free port), with one published RS256 2048-bit signing key.
 * Call {@link TestIssuer.close} when done.
 */
export async function startIssuer(opts: IssuerOptions = {}): Promise<TestIssuer> {
  const prefix = opts.path === undefined || opts.path === '' || opts.path === '/' ? '' : `/${opts.path.replace(/^\/+|\/+$/g, '')}`
  const audience = opts.audience ?? 'gatehouse'
  const clients = opts.clients ?? { 'test-client': 'test-secret' }
  const tokenTtl = opts.tokenTtl ?? 300

  const keyMap = new Map<string, KeyEntry>()
  let signingKid = ''
  let keyCounter = 0
  let attackerKey: KeyEntry | undefined
  let unpublishedKey: KeyEntry | undefined

  const hits: IssuerHits = { discovery: 0, jwks: 0, token: 0 }
  const faultDefaults: IssuerFaults = { down: false, slowMs: 0, status500: false, garbage: false, hugeBytes: 0, hugeContentLength: false, target: 'all' }
  const faults: IssuerFaults = { ...faultDefaults }

  const entry = (kid: string): KeyEntry => {
    const k = keyMap.get(kid)
    if (k === undefined) throw new Error(`test issuer: no key ${kid}`)
    return k
  }

  const addKey = async (alg: SigningAlg = 'RS256', o: AddKeyOptions = {}): Promise<string> => {
    keyCounter++
    const kid = o.kid ?? `key-${keyCounter}-${alg.toLowerCase()}`
    if (keyMap.has(kid)) throw new Error(`test issuer: key ${kid} exists`)
    keyMap.set(kid, await makeKey(alg, kid, o))
    return kid
  }

  const jwks = (): { keys: JWK[] } => ({ keys: [...keyMap.values()].filter((k) => k.published).map((k) => ({ ...k.jwk })) })

  const keys: IssuerKeys = {
    addKey,
    removeKey: (kid) => {
      entry(kid).published = false
    },
    publish: (kid) => {
      entry(kid).published = true
    },
    setSigningKey: (kid) => {
      entry(kid)
      signingKid = kid
    },
    rotate: async (alg) => {
      const kid = await addKey(alg ?? entry(signingKid).alg)
      signingKid = kid
      return kid
    },
    get signingKid() {
      return signingKid
    },
    list: () =>
      [...keyMap.values()].map((k) =>
        defined({
          kid: k.kid,
          alg: k.alg,
          kty: k.jwk.kty,
          published: k.published,
          signing: k.kid === signingKid,
          modulusLength: k.modulusLength,
          crv: k.jwk.crv,
        }) as unknown as KeyInfo,
      ),
    publicJwk: (kid) => ({ ...entry(kid).jwk }),
    jwks,
    privateJwk: (kid) => ({ ...(entry(kid).privateKey.export({ format: 'jwk' }) as JWK), kid, alg: entry(kid).alg, use: 'sig' }),
  }

  const { alg: firstAlg, ...firstOpts } = opts.initialKey ?? {}
  signingKid = await addKey(firstAlg ?? 'RS256', firstOpts)

  // The issuer URL needs the port, so the server starts before the public object exists.
  const sockets = new Set<Socket>()
  let port = 0
  let listening = false
  let closed = false
  const origin = (): string => `http://127.0.0.1:${port}`
  const issuerUrl = (): string => `${origin()}${prefix}`

  const now = (): number => Math.floor(Date.now() / 1000)
  const claimsFor = (claims: Claims | undefined, aud: string | undefined): Record<string, unknown> => {
    const t = now()
    return defined({ iss: issuerUrl(), aud: aud ?? audience, sub: 'test-user', iat: t, exp: t + 300, ...claims })
  }

  const sign = async (claims?: Claims, o: SignOptions = {}): Promise<string> => {
    const k = entry(o.kid ?? signingKid)
    const alg = String(o.alg ?? o.header?.alg ?? k.alg)
    if (alg === 'none' || alg.startsWith('HS')) throw new Error(`test issuer: sign() will not do ${alg}; use attacks.*`)
    const header = { ...defined({ kid: k.kid, typ: 'JWT', ...o.header }), alg }
    const payload = claimsFor(claims, o.audience)
    if (k.cryptoKey === undefined || alg !== k.alg) return rawJwt(header, payload, k.privateKey)
    return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(k.cryptoKey)
  }

  const discoveryDoc = (): Record<string, unknown> => {
    const iss = issuerUrl()
    const algs = [...new Set([...keyMap.values()].filter((k) => k.published).map((k) => k.alg))]
    return defined({
      issuer: iss,
      authorization_endpoint: `${iss}/auth`,
      token_endpoint: `${iss}/token`,
      jwks_uri: `${iss}/jwks`,
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      id_token_signing_alg_values_supported: algs,
      ...api.discoveryOverrides,
    })
  }

  const sendJson = (res: http.ServerResponse, status: number, body: unknown, extra: http.OutgoingHttpHeaders = {}): void => {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...extra })
    res.end(text)
  }

  /** Resolves true after ms, or false as soon as the client goes away. */
  const wait = (ms: number, res: http.ServerResponse): Promise<boolean> =>
    new Promise((resolve) => {
      const onClose = (): void => {
        clearTimeout(t)
        resolve(false)
      }
      const t = setTimeout(() => {
        res.off('close', onClose)
        resolve(true)
      }, ms)
      res.once('close', onClose)
    })

  const streamHuge = (res: http.ServerResponse, total: number): void => {
    const head = Buffer.from('{"keys":[')
    const tail = Buffer.from(']}')
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    res.writeHead(200, { 'content-type': 'application/json', ...(faults.hugeContentLength ? { 'content-length': total } : {}) })
    let left = total
    let gone = false
    res.once('close', () => {
      gone = true
    })
    const put = (b: Buffer): boolean => {
      const piece = b.length > left ? b.subarray(0, left) : b
      left -= piece.length
      return res.write(piece)
    }
    if (left > 0) put(head)
    const pump = (): void => {
      while (!gone && left > 0) {
        const ok = left <= tail.length ? put(tail.subarray(tail.length - left)) : put(left - tail.length >= chunk.length ? chunk : chunk.subarray(0, left - tail.length))
        if (!ok) {
          res.once('drain', pump)
          return
        }
      }
      if (!gone) res.end()
    }
    pump()
  }

  const readBody = (req: http.IncomingMessage, limit: number): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      const parts: Buffer[] = []
      let size = 0
      req.on('data', (c: Buffer) => {
        size += c.length
        if (size > limit) {
          resolve(undefined)
          req.destroy()
          return
        }
        parts.push(c)
      })
      req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')))
      req.on('error', reject)
    })

  const handleToken = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'invalid_request' }, { allow: 'POST' })
    const body = await readBody(req, 64 * 1024)
    if (body === undefined) return sendJson(res, 413, { error: 'invalid_request' })
    const form = new URLSearchParams(body)
    let id = form.get('client_id') ?? undefined
    let secret = form.get('client_secret') ?? undefined
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '')
    if (basic !== null) {
      const decoded = Buffer.from(basic[1] ?? '', 'base64').toString('utf8')
      const i = decoded.indexOf(':')
      const dec = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '))
      if (i >= 0) {
        id = dec(decoded.slice(0, i))
        secret = dec(decoded.slice(i + 1))
      }
    }
    if (id === undefined || secret === undefined || !Object.hasOwn(clients, id) || clients[id] !== secret) {
      return sendJson(res, 401, { error: 'invalid_client' }, basic !== null ? { 'www-authenticate': 'Basic realm="test-issuer"' } : {})
    }
    if (form.get('grant_type') !== 'client_credentials') return sendJson(res, 400, { error: 'unsupported_grant_type' })
    const scope = form.get('scope') ?? undefined
    const t = now()
    const accessToken = await sign({ sub: id, client_id: id, scope, iat: t, exp: t + tokenTtl, ...opts.tokenClaims })
    sendJson(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: tokenTtl, ...(scope !== undefined ? { scope } : {}) })
  }

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname
    const route =
      pathname === `${prefix}/.well-known/openid-configuration`
        ? 'discovery'
        : pathname === `${prefix}/jwks`
          ? 'jwks'
          : pathname === `${prefix}/token`
            ? 'token'
            : undefined
    if (route === undefined) return sendJson(res, 404, { error: 'not_found' })
    hits[route]++
    const faulted = faults.target === 'all' || faults.target === route
    if (faulted) {
      if (faults.down) {
        req.socket.destroy()
        return
      }
      if (faults.slowMs > 0 && !(await wait(faults.slowMs, res))) return
      if (faults.status500) return sendJson(res, 500, { error: 'server_error' })
      if (faults.garbage) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('<html><body>this is not JSON {"keys": [</body></html>')
        return
      }
      if (faults.hugeBytes > 0) return streamHuge(res, faults.hugeBytes)
    }
    if (route === 'token') return handleToken(req, res)
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'GET, HEAD' })
    sendJson(res, 200, route === 'discovery' ? discoveryDoc() : api.jwksOverride !== undefined ? api.jwksOverride : jwks())
  }

  const server = http.createServer({ requestTimeout: 0 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', detail: String(err) })
      else res.destroy()
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })

  const listen = (p: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err)
      server.once('error', onError)
      server.listen(p, '127.0.0.1', () => {
        server.off('error', onError)
        port = (server.address() as AddressInfo).port
        listening = true
        resolve()
      })
    })

  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (!listening) return resolve()
      listening = false
      server.close(() => resolve())
      for (const s of sockets) s.destroy()
    })

  await listen(0)

  // Attack helpers.
  const rsaForConfusion = (): KeyEntry => {
    const signer = entry(signingKid)
    if (signer.jwk.kty === 'RSA') return signer
    const k = [...keyMap.values()].find((x) => x.published && x.jwk.kty === 'RSA')
    if (k === undefined) throw new Error('test issuer: hs256WithPublicKey needs an RSA key')
    return k
  }

  const attacks: IssuerAttacks = {
    unsignedAlgNone: (claims) => `${b64json({ alg: 'none', kid: signingKid, typ: 'JWT' })}.${b64json(claimsFor(claims, undefined))}.`,
    hs256WithPublicKey: (claims, material = 'spki') => {
      const k = rsaForConfusion()
      const secret =
        material === 'jwk'
          ? JSON.stringify(k.jwk)
          : (k.publicKey.export({ type: material === 'pkcs1' ? 'pkcs1' : 'spki', format: 'pem' }) as string)
      return rawJwt({ alg: 'HS256', kid: k.kid, typ: 'JWT' }, claimsFor(claims, undefined), secret)
    },
    signWithUnpublishedKey: async (claims, kid) => {
      unpublishedKey ??= await makeKey('RS256', `unpublished-${randomBytes(6).toString('hex')}`, { publish: false })
      const header = { alg: 'RS256', kid: kid ?? unpublishedKey.kid, typ: 'JWT' }
      return new SignJWT(claimsFor(claims, undefined)).setProtectedHeader(header).sign(unpublishedKey.cryptoKey as CryptoKey)
    },
    withEmbeddedJwk: async (claims, jku = DEFAULT_ATTACKER_JKU) => {
      attackerKey ??= await makeKey('RS256', `attacker-${randomBytes(6).toString('hex')}`, { publish: false })
      const header = { alg: 'RS256', kid: attackerKey.kid, typ: 'JWT', jwk: attackerKey.jwk, jku }
      return new SignJWT(claimsFor(claims, undefined)).setProtectedHeader(header).sign(attackerKey.cryptoKey as CryptoKey)
    },
    corruptSignature,
    weakRsa: async (claims) => {
      const kid = 'weak-rsa-1024'
      if (!keyMap.has(kid)) await addKey('RS256', { kid, modulusLength: 1024, publish: true })
      return sign(claims, { kid })
    },
    oversized: async (claims, bytes) => {
      const base = { ...claims, pad: '' }
      const first = await sign(base)
      const missing = bytes - first.length
      if (missing <= 0) return first
      return sign({ ...base, pad: 'x'.repeat(Math.ceil((missing * 3) / 4) + 3) })
    },
  }

  const api: TestIssuer = {
    get url() {
      return issuerUrl()
    },
    get jwksUrl() {
      return `${issuerUrl()}/jwks`
    },
    get discoveryUrl() {
      return `${issuerUrl()}/.well-known/openid-configuration`
    },
    get tokenUrl() {
      return `${issuerUrl()}/token`
    },
    get port() {
      return port
    },
    get listening() {
      return listening
    },
    keys,
    faults,
    hits,
    discoveryOverrides: {},
    jwksOverride: undefined,
    attacks,
    sign,
    resetHits: () => {
      hits.discovery = 0
      hits.jwks = 0
      hits.token = 0
    },
    resetFaults: () => {
      Object.assign(faults, faultDefaults)
    },
    stop,
    start: async () => {
      if (closed) throw new Error('test issuer: closed')
      if (!listening) await listen(port)
    },
    close: async () => {
      closed = true
      await stop()
    },
  }
  return api
}
