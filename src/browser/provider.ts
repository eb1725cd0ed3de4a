/**
 * The identity provider's endpoints for the browser sign-in: discovery
 * (`authorization_endpoint`, `token_endpoint`, `end_session_endpoint`), the authorization
 * request, the code exchange and the refresh (RFC 6749 §4.1, §6; RFC 7636 PKCE; OIDC Core §3.1).
 * Every request goes through the issuer's own HTTP client (its trust, time and size limits).
 * Tokens, codes and secrets never reach a log line or an error message.
 */
import type { Dispatcher } from 'undici'
import { undici } from '../lazyModules.ts'
import { fetchJson, FetchError, type FetchLimits } from '../auth/oidc/fetch.ts'

/** Why talking to the provider failed; `message` is safe to log (no token, no code). */
export class ProviderError extends Error {
  readonly reason: 'discovery' | 'network' | 'rejected' | 'bad-response'
  /** The provider's OAuth `error` code, when it sent one (`invalid_grant`…). */
  readonly oauthError: string | undefined
  constructor(reason: ProviderError['reason'], message: string, oauthError?: string) {
    super(message)
    this.name = 'ProviderError'
    this.reason = reason
    this.oauthError = oauthError
  }
}

/** The endpoints a browser sign-in uses. */
export interface ProviderEndpoints {
  readonly authorization: string
  readonly token: string
  readonly endSession: string | undefined
}

/** A token endpoint answer (RFC 6749 §5.1). */
export interface TokenResponse {
  readonly accessToken: string | undefined
  readonly idToken: string | undefined
  readonly refreshToken: string | undefined
  /** Seconds, when the provider said. */
  readonly expiresIn: number | undefined
}

export interface ProviderClientOptions {
  readonly issuer: string
  readonly clientId: string
  /** Confidential client (client_secret_basic); undefined: a public client (PKCE only). */
  readonly clientSecret: string | undefined
  readonly http: () => { readonly dispatcher: Dispatcher; readonly limits: FetchLimits }
  readonly now?: () => number
}

// Discovery is re-read at most this often, and a failed read is retried after the cooldown.
const DISCOVERY_TTL_MS = 3_600_000
const DISCOVERY_RETRY_MS = 5_000
const MAX_TOKEN_RESPONSE = 64 * 1024

function httpsOrLoopback(u: unknown): u is string {
  if (typeof u !== 'string') return false
  try {
    const url = new URL(u)
    return url.protocol === 'https:' || (url.protocol === 'http:' && /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(url.hostname))
  } catch {
    return false
  }
}

/** The provider of one issuer. */
export class ProviderClient {
  readonly #o: ProviderClientOptions
  readonly #now: () => number
  #endpoints: { value: ProviderEndpoints; at: number } | undefined
  #failedAt = -Infinity
  #inflight: Promise<ProviderEndpoints> | undefined

  constructor(o: ProviderClientOptions) {
    this.#o = o
    this.#now = o.now ?? Date.now
  }

  get clientId(): string {
    return this.#o.clientId
  }

  /** The discovered endpoints (cached for an hour; shared fetch). */
  async endpoints(): Promise<ProviderEndpoints> {
    const e = this.#endpoints
    if (e !== undefined && this.#now() - e.at < DISCOVERY_TTL_MS) return e.value
    if (e === undefined && this.#now() - this.#failedAt < DISCOVERY_RETRY_MS && this.#inflight === undefined) throw new ProviderError('discovery', 'discovery failed moments ago')
    this.#inflight ??= this.#discover().finally(() => {
      this.#inflight = undefined
    })
    try {
      return await this.#inflight
    } catch (err) {
      // The last good endpoints keep working while the issuer's discovery is down.
      if (e !== undefined) return e.value
      throw err
    }
  }

  async #discover(): Promise<ProviderEndpoints> {
    const { dispatcher, limits } = this.#o.http()
    const url = `${this.#o.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
    let doc: Record<string, unknown>
    try {
      doc = await fetchJson(url, dispatcher, limits)
    } catch (e) {
      this.#failedAt = this.#now()
      throw new ProviderError('discovery', e instanceof FetchError ? e.message : String(e))
    }
    // OpenID Connect Discovery §4.3: the issuer must be identical to the one configured.
    if (doc.issuer !== this.#o.issuer || !httpsOrLoopback(doc.authorization_endpoint) || !httpsOrLoopback(doc.token_endpoint)) {
      this.#failedAt = this.#now()
      throw new ProviderError('discovery', `discovery document of ${this.#o.issuer} lacks a matching issuer or https authorization/token endpoints`)
    }
    const value: ProviderEndpoints = {
      authorization: doc.authorization_endpoint,
      token: doc.token_endpoint,
      endSession: httpsOrLoopback(doc.end_session_endpoint) ? doc.end_session_endpoint : undefined,
    }
    this.#endpoints = { value, at: this.#now() }
    return value
  }

  /** The authorization request URL (response_type=code, PKCE S256, state, nonce). */
  async authorizationUrl(p: { readonly redirectUri: string; readonly scopes: readonly string[]; readonly state: string; readonly nonce: string; readonly challenge: string }): Promise<string> {
    const { authorization } = await this.endpoints()
    const u = new URL(authorization)
    const q = u.searchParams
    q.set('response_type', 'code')
    q.set('client_id', this.#o.clientId)
    q.set('redirect_uri', p.redirectUri)
    q.set('scope', p.scopes.join(' '))
    q.set('state', p.state)
    q.set('nonce', p.nonce)
    q.set('code_challenge', p.challenge)
    q.set('code_challenge_method', 'S256')
    return u.toString()
  }

  /** Exchange an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5). */
  exchangeCode(code: string, verifier: string, redirectUri: string): Promise<TokenResponse> {
    return this.#token({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier })
  }

  /** Refresh (RFC 6749 §6). */
  refresh(refreshToken: string): Promise<TokenResponse> {
    return this.#token({ grant_type: 'refresh_token', refresh_token: refreshToken })
  }

  /** RP-initiated logout URL (OIDC RP-Initiated Logout 1.0 §2), or undefined when not advertised. */
  async endSessionUrl(p: { readonly idTokenHint: string | undefined; readonly postLogoutRedirectUri: string | undefined }): Promise<string | undefined> {
    let e: ProviderEndpoints
    try {
      e = await this.endpoints()
    } catch {
      return undefined
    }
    if (e.endSession === undefined) return undefined
    const u = new URL(e.endSession)
    if (p.idTokenHint !== undefined) u.searchParams.set('id_token_hint', p.idTokenHint)
    u.searchParams.set('client_id', this.#o.clientId)
    if (p.postLogoutRedirectUri !== undefined) u.searchParams.set('post_logout_redirect_uri', p.postLogoutRedirectUri)
    return u.toString()
  }

  async #token(params: Record<string, string>): Promise<TokenResponse> {
    const { token } = await this.endpoints()
    const { dispatcher, limits } = this.#o.http()
    const body = new URLSearchParams(params)
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
    const secret = this.#o.clientSecret
    if (secret === undefined) body.set('client_id', this.#o.clientId)
    // client_secret_basic: both parts form-urlencoded first (RFC 6749 §2.3.1).
    else headers.authorization = `Basic ${Buffer.from(`${formEncode(this.#o.clientId)}:${formEncode(secret)}`).toString('base64')}`
    let res: Dispatcher.ResponseData
    try {
      res = await undici().request(token, { method: 'POST', body: body.toString(), headers, dispatcher, headersTimeout: limits.timeoutMs, bodyTimeout: limits.timeoutMs, signal: AbortSignal.timeout(limits.timeoutMs) })
    } catch (e) {
      throw new ProviderError('network', `token endpoint: ${(e as Error).name}`)
    }
    let text = ''
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        text += chunk.toString('utf8')
        if (text.length > MAX_TOKEN_RESPONSE) throw new ProviderError('bad-response', 'token response too large')
      }
    } catch (e) {
      res.body.destroy()
      if (e instanceof ProviderError) throw e
      throw new ProviderError('network', 'token endpoint: body not read')
    }
    let j: Record<string, unknown>
    try {
      j = JSON.parse(text) as Record<string, unknown>
    } catch {
      throw new ProviderError('bad-response', `token endpoint answered ${res.statusCode} without JSON`)
    }
    if (res.statusCode !== 200) {
      // RFC 6749 §5.2: `error` is a short ASCII code; kept only when it looks like one.
      const err = typeof j.error === 'string' && /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(j.error) ? j.error : undefined
      throw new ProviderError('rejected', `token endpoint answered ${res.statusCode}${err === undefined ? '' : ` ${err}`}`, err)
    }
    const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
    const expiresIn = typeof j.expires_in === 'number' && Number.isFinite(j.expires_in) && j.expires_in > 0 ? j.expires_in : typeof j.expires_in === 'string' && /^\d{1,9}$/.test(j.expires_in) ? Number(j.expires_in) : undefined
    return { accessToken: str(j.access_token), idToken: str(j.id_token), refreshToken: str(j.refresh_token), expiresIn }
  }
}

function formEncode(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, '+')
}
