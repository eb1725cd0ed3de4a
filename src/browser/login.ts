/**
 * The compiled browser sign-in of one runtime (`authentication.oidc.browserLogin`): settings,
 * the provider client, ID-token verification, and the session check with its refresh. Built
 * once per configuration by the composition root; the store, the local issuer and the logger
 * are the handler's and arrive per call.
 */
import { GatehouseError } from '../errors.ts'
import type { JwtVerifier } from '../auth/authenticate.ts'
import { jwtShape } from '../auth/jwtShape.ts'
import type { Principal } from '../http/principal.ts'
import type { Logger } from '../log.ts'
import { readCookie } from '../session/cookie.ts'
import { hashSessionId } from '../session/id.ts'
import type { SessionManager } from '../session/manager.ts'
import { openTokens, sealTokens, type OidcTokens } from '../session/tokens.ts'
import type { SessionRecord, StateStore } from '../store/store.ts'
import type { ProviderClient} from './provider.ts';
import { ProviderError, type TokenResponse } from './provider.ts'

/** The OIDC side of the browser sign-in (absent when only local users sign in). */
export interface BrowserOidc {
  readonly issuer: string
  readonly clientId: string
  readonly scopes: readonly string[]
  /** The issuer's bearer-JWT verifier: the ID token passes the same rules (SPEC §5). */
  readonly verifier: JwtVerifier
  readonly provider: ProviderClient
}

/** Settings of the browser sign-in, compiled from the configuration. */
export interface BrowserSettings {
  readonly oidc: BrowserOidc | undefined
  /** The sign-in page offers local users' username/password form. */
  readonly localUsers: boolean
  /** `browserLogin.redirectUrl`; undefined: derived from the request. */
  readonly redirectUrl: string | undefined
  readonly cookieName: string
  readonly idleTimeoutMs: number
  readonly lifetimeMs: number
  /** The data listener's scheme (for the derived redirect URI and the origin check). */
  readonly proto: 'http' | 'https'
}

/** Refresh this long before the provider's tokens expire (and not later). */
export const REFRESH_MARGIN_MS = 60_000

/** Why a session cookie did not authenticate (logged as the access line's detail; never the id). */
export type SessionMiss = 'absent' | 'duplicate' | 'malformed' | 'unknown' | 'idle-expired' | 'expired' | 'revoked' | 'refresh-failed' | 'cross-site'

/** What the session check needs from the handler. */
export interface SessionDeps {
  readonly sessions: SessionManager
  readonly store: Pick<StateStore, 'updateSessionOidc' | 'deleteSession'>
  readonly logger: Logger
}

/** The verified identity of an ID token. */
export interface IdIdentity {
  readonly principal: Principal
  readonly expiresAt: number | undefined
}

/** One runtime's browser sign-in. */
export class BrowserLogin {
  readonly settings: BrowserSettings
  readonly #refreshing = new Map<string, Promise<SessionRecord | undefined>>()
  readonly #now: () => number

  constructor(settings: BrowserSettings, now: () => number = Date.now) {
    this.settings = settings
    this.#now = now
  }

  /** gatehouse's cookies on the data listener (removed before forwarding). */
  get cookieNames(): readonly string[] {
    return [this.settings.cookieName]
  }

  /** Whether a Cookie header names the session cookie at all (however well-formed). */
  hasSessionCookie(cookieHeader: string | readonly string[] | undefined): boolean {
    const c = readCookie(cookieHeader, this.settings.cookieName)
    return c.ok || c.reason !== 'absent'
  }

  /**
   * Verify an ID token with the bearer rules (issuer, signature, allowed algorithms, exp/nbf
   * with the clock tolerance, username and groups claims) and the ID-token rules of OIDC Core
   * §3.1.3.7: `aud` contains the client id — always, whatever skipClientIdCheck says for
   * bearer tokens —, `azp` (when present) is the client id, and `nonce` equals the one this
   * flow sent (omitted for a refreshed ID token, §12.2).
   *
   * @throws GatehouseError (401 family) with a log-safe detail.
   */
  async verifyIdToken(idToken: string, nonce: string | undefined): Promise<IdIdentity> {
    const o = this.settings.oidc
    if (o === undefined) throw new TypeError('verifyIdToken without OIDC')
    const shape = jwtShape(idToken)
    if (shape === undefined) throw new GatehouseError('ERR_INVALID_TOKEN', { detail: 'id_token is not a JWT' })
    const p = shape.payload
    const aud = p.aud
    if (!(typeof aud === 'string' ? aud === o.clientId : Array.isArray(aud) && aud.includes(o.clientId))) throw new GatehouseError('ERR_INVALID_TOKEN', { detail: 'id_token aud does not contain the client id' })
    if (p.azp !== undefined && p.azp !== o.clientId) throw new GatehouseError('ERR_INVALID_TOKEN', { detail: 'id_token azp is not the client id' })
    if (nonce !== undefined && p.nonce !== nonce) throw new GatehouseError('ERR_INVALID_TOKEN', { detail: 'id_token nonce does not match the flow' })
    const principal = await o.verifier.verify(idToken, shape)
    return { principal, expiresAt: typeof p.exp === 'number' ? p.exp * 1000 : undefined }
  }

  /** What a session keeps of a token response (the access token's expiry rules the refresh). */
  tokensOf(t: TokenResponse, id: IdIdentity | undefined, previous?: OidcTokens): OidcTokens {
    const now = this.#now()
    const expiresAt = t.expiresIn !== undefined ? now + t.expiresIn * 1000 : (id?.expiresAt ?? now + this.settings.lifetimeMs)
    const refreshToken = t.refreshToken ?? previous?.refreshToken
    const idToken = t.idToken ?? previous?.idToken
    return { ...(refreshToken === undefined ? {} : { refreshToken }), ...(idToken === undefined ? {} : { idToken }), ...(t.accessToken === undefined ? {} : { accessToken: t.accessToken }), expiresAt }
  }

  /**
   * The principal of the request's session cookie, or why there is none. A session whose
   * provider tokens are about to expire is refreshed first (one refresh per session at a time
   * in this process); when that fails the session ends and the request has no credential.
   */
  async sessionPrincipal(cookieHeader: string | readonly string[] | undefined, d: SessionDeps): Promise<{ readonly principal: Principal } | { readonly miss: SessionMiss }> {
    const c = readCookie(cookieHeader, this.settings.cookieName)
    if (!c.ok) return { miss: c.reason }
    const check = await d.sessions.authenticate(c.value)
    if (!check.ok) return { miss: check.reason }
    let s: SessionRecord | undefined = check.session
    if (s.kind !== 'browser') return { miss: 'unknown' } // a console session never authenticates here
    if (s.oidc !== undefined && this.#now() >= s.oidc.expiresAt - REFRESH_MARGIN_MS) {
      const hash = hashSessionId(c.value)
      let p = this.#refreshing.get(hash)
      if (p === undefined) {
        p = this.#refresh(c.value, hash, s, d).finally(() => this.#refreshing.delete(hash))
        this.#refreshing.set(hash, p)
      }
      s = await p
      if (s === undefined) return { miss: 'refresh-failed' }
    }
    return { principal: principalOf(s) }
  }

  async #refresh(id: string, hash: string, s: SessionRecord, d: SessionDeps): Promise<SessionRecord | undefined> {
    const o = this.settings.oidc
    const slot = s.oidc as NonNullable<SessionRecord['oidc']>
    const tokens = openTokens(id, slot.sealed)
    const end = async (why: string): Promise<undefined> => {
      d.logger.info({ user: s.username, reason: why }, 'browser session ended: its provider tokens could not be refreshed')
      await d.store.deleteSession(hash)
      return undefined
    }
    if (o === undefined || o.issuer !== slot.issuer || tokens === undefined) return end('no usable sealed tokens')
    if (tokens.refreshToken === undefined) return this.#now() < slot.expiresAt ? s : end('no refresh token and the tokens expired')
    let t: TokenResponse
    try {
      t = await o.provider.refresh(tokens.refreshToken)
    } catch (e) {
      // A provider that cannot be reached is not a refusal: keep the session while its tokens last.
      if (e instanceof ProviderError && (e.reason === 'network' || e.reason === 'discovery') && this.#now() < slot.expiresAt) return s
      return end(e instanceof ProviderError ? e.message : 'refresh failed')
    }
    let id2: IdIdentity | undefined
    if (t.idToken !== undefined) {
      try {
        id2 = await this.verifyIdToken(t.idToken, undefined)
      } catch (e) {
        return end(`refreshed id_token refused: ${(e as GatehouseError).detail ?? (e as Error).message}`)
      }
      // The same person, or the session ends (OIDC Core §12.2: sub and iss must not change).
      if (id2.principal.user !== s.username) return end('refreshed id_token names another user')
    }
    const next = this.tokensOf(t, id2, tokens)
    const oidc = { issuer: slot.issuer, sealed: sealTokens(id, next), expiresAt: next.expiresAt }
    if (!(await d.store.updateSessionOidc(hash, oidc))) return undefined // ended meanwhile
    // The groups stay those of the sign-in (the store keeps one identity per session).
    return { ...s, oidc }
  }
}

/** The principal of a session: the same shape a bearer request of that user has. */
export function principalOf(s: SessionRecord): Principal {
  return Object.freeze({ user: s.username, groups: Object.freeze([...s.groups]), email: s.email, method: s.method })
}
