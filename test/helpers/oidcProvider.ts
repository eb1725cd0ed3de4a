/**
 * panva's oidc-provider (a certified OpenID provider) in-process on 127.0.0.1:0, issuing RS256
 * JWT access tokens by the client_credentials grant — exactly what Weaviate's clients request —
 * and, once `enableBrowserClient` registered gatehouse's callback, the authorization code flow
 * with PKCE for browser sign-in: its interactive dev login (any login name, any password),
 * refresh tokens, and RP-initiated logout (`end_session_endpoint`).
 *
 * Without resource indicators oidc-provider issues opaque tokens; `defaultResource` supplies the
 * resource when the client sends none (weaviate-client never does) and `getResourceServerInfo`
 * makes its tokens JWTs whose `aud` is the client id (what Weaviate/gatehouse check).
 */
import { generateKeyPairSync } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'

export const CLIENT_ID = 'gatehouse-test-client'
export const CLIENT_SECRET = 'gatehouse-test-secret-0f9a'
const RESOURCE = 'urn:gatehouse:weaviate'

/** The browser sign-in client (confidential, client_secret_basic). */
export const BROWSER_CLIENT_ID = 'gatehouse-browser'
export const BROWSER_CLIENT_SECRET = 'gatehouse-browser-secret-7c21e9'

/** The environment of a gatehouse whose browser sign-in uses the provider at `issuer` (the confidential browser client). */
export function browserLoginEnv(issuer: string): Record<string, string> {
  return {
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: issuer,
    AUTHENTICATION_OIDC_CLIENT_ID: BROWSER_CLIENT_ID,
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'preferred_username',
    GATEHOUSE_BROWSER_LOGIN_ENABLED: 'true',
    GATEHOUSE_OIDC_CLIENT_SECRET: BROWSER_CLIENT_SECRET,
  }
}

/** What the provider says about a person who signs in with login name `id`. */
export function accountClaims(id: string): Record<string, unknown> {
  return { sub: id, preferred_username: id, email: `${id}@example.test`, groups: ['readers', `team-${id}`] }
}

export interface BrowserClientOptions {
  /** gatehouse's callback URL(s). */
  redirectUris: string[]
  postLogoutRedirectUris?: string[]
  /** Access-token lifetime in seconds (the token response's expires_in): short ones make gatehouse refresh. Default 300. */
  accessTokenTtl?: number
}

/** Test switches: the provider misbehaves on purpose. */
export interface ProviderFaults {
  /** Re-sign the next ID token(s) of a code exchange with this nonce instead of the right one. */
  idTokenNonce: string | undefined
  /** Answer every refresh grant with 400 invalid_grant (a revoked refresh token). */
  refuseRefresh: boolean
}

export interface OidcProvider {
  issuer: string
  tokenEndpoint: string
  /** Register (or re-register) the browser sign-in client; the provider is rebuilt with the same keys. */
  enableBrowserClient(o: BrowserClientOptions): Promise<void>
  faults: ProviderFaults
  /** The grant_type of every token request, in order. */
  tokenGrants: string[]
  close(): Promise<void>
}

let muted = false
function muteProviderNotices(): void {
  if (muted) return
  muted = true
  // oidc-provider prints dev notices (and, on Node 20, an "unsupported runtime" warning at import).
  for (const k of ['warn', 'info'] as const) {
    const orig = console[k].bind(console)
    console[k] = (...a: unknown[]) => {
      if (typeof a[0] === 'string' && a[0].includes('oidc-provider ')) return
      orig(...a)
    }
  }
}

/** Start the provider. */
export async function startOidcProvider(opts: { extraClaims?: Record<string, unknown> } = {}): Promise<OidcProvider> {
  muteProviderNotices()
  const { default: Provider, errors } = await import('oidc-provider')
  const { SignJWT, decodeJwt, importJWK } = await import('jose')
  const server = http.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'op-rs256', alg: 'RS256', use: 'sig' }
  const faults: ProviderFaults = { idTokenNonce: undefined, refuseRefresh: false }
  const tokenGrants: string[] = []

  const build = (browser: BrowserClientOptions | undefined): ReturnType<InstanceType<typeof Provider>['callback']> => {
    const clients: Record<string, unknown>[] = [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_post' }]
    if (browser !== undefined) {
      clients.push({
        client_id: BROWSER_CLIENT_ID,
        client_secret: BROWSER_CLIENT_SECRET,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: browser.redirectUris,
        post_logout_redirect_uris: browser.postLogoutRedirectUris ?? [],
        token_endpoint_auth_method: 'client_secret_basic',
      })
    }
    const provider = new Provider(issuer, {
      clients,
      jwks: { keys: [jwk] },
      // Every login name is an account with these claims (the dev login accepts any password).
      findAccount: async (_ctx: unknown, id: string) => ({ accountId: id, claims: async () => accountClaims(id) }),
      claims: { openid: ['sub'], profile: ['preferred_username', 'groups'], email: ['email'] },
      scopes: ['openid', 'offline_access', 'profile', 'email'],
      // The ID token carries the claims of the granted scopes (what Keycloak does by default).
      conformIdTokenClaims: false,
      // Consent is granted without a page: the test is about gatehouse, not the provider's consent UI.
      loadExistingGrant: async (ctx: any) => { // eslint-disable-line @typescript-eslint/no-explicit-any
        const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId)
        if (grantId !== undefined) return ctx.oidc.provider.Grant.find(grantId)
        const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId })
        grant.addOIDCScope('openid offline_access profile email')
        await grant.save()
        return grant
      },
      // A refresh token for every code grant of the browser client (like Keycloak without offline_access).
      issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }) => client.grantTypeAllowed('refresh_token'),
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: true },
        clientCredentials: { enabled: true },
        rpInitiatedLogout: { enabled: true },
        resourceIndicators: {
          enabled: true,
          // Only the client_credentials client gets JWT access tokens for the resource; the
          // browser client gets ordinary (opaque) ones.
          defaultResource: async (_ctx: unknown, client: { clientId: string }, oneOf: string | undefined) => (client.clientId === CLIENT_ID ? (oneOf ?? RESOURCE) : undefined),
          useGrantedResource: async () => false,
          getResourceServerInfo: async (_ctx: unknown, resource: string) => {
            if (resource !== RESOURCE) throw new errors.InvalidTarget()
            return { scope: 'openid profile email', audience: CLIENT_ID, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }
          },
        },
      },
      extraTokenClaims: async () => ({ ...opts.extraClaims }),
      ttl: { ClientCredentials: 300, AccessToken: browser?.accessTokenTtl ?? 300, IdToken: 3600, RefreshToken: 86_400, Grant: 86_400, Session: 86_400, Interaction: 600, AuthorizationCode: 60 },
      clientBasedCORS: () => true,
    })
    return provider.callback()
  }

  let callback = build(undefined)
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method === 'POST' && req.url?.split('?')[0] === '/token') {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        const grant = new URLSearchParams(body.toString('utf8')).get('grant_type') ?? ''
        tokenGrants.push(grant)
        if (grant === 'refresh_token' && faults.refuseRefresh) {
          res.writeHead(400, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'grant request is invalid' }))
          return
        }
        const nonce = faults.idTokenNonce
        if (grant === 'authorization_code' && nonce !== undefined) rewriteIdToken(res, async (idToken) => {
          const claims = { ...decodeJwt(idToken), nonce }
          return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'op-rs256', typ: 'JWT' }).sign(await importJWK(jwk, 'RS256'))
        })
        // The body was read here: hand the provider a replay of it.
        const stream = new PassThrough()
        stream.end(body)
        const replay = Object.assign(stream, { headers: req.headers, method: req.method, url: req.url, httpVersion: req.httpVersion, socket: req.socket, connection: req.socket, rawHeaders: req.rawHeaders })
        callback(replay as unknown as http.IncomingMessage, res)
      })
      return
    }
    callback(req, res)
  })
  return {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    faults,
    tokenGrants,
    enableBrowserClient: async (o) => {
      callback = build(o)
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

/** Let the provider answer, then replace the id_token of its JSON body (a test fault). */
function rewriteIdToken(res: http.ServerResponse, rewrite: (idToken: string) => Promise<string>): void {
  const end = res.end.bind(res) as (chunk?: unknown) => http.ServerResponse
  ;(res as unknown as { end: (chunk?: unknown) => http.ServerResponse }).end = (chunk?: unknown) => {
    const text = Buffer.isBuffer(chunk) ? chunk.toString('utf8') : typeof chunk === 'string' ? chunk : ''
    let j: Record<string, unknown>
    try {
      j = JSON.parse(text) as Record<string, unknown>
    } catch {
      return end(chunk)
    }
    if (typeof j.id_token !== 'string') return end(chunk)
    void rewrite(j.id_token).then((t) => {
      const out = JSON.stringify({ ...j, id_token: t })
      res.setHeader('content-length', Buffer.byteLength(out))
      end(out)
    })
    return res
  }
}

/** Get an access token by the client_credentials grant, as weaviate-client does (client_secret_post). */
export async function clientCredentialsToken(op: OidcProvider, scope = ''): Promise<string> {
  const res = await fetch(op.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded;charset=UTF-8' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: CLIENT_ID, client_secret: CLIENT_SECRET, scope }),
  })
  const body = (await res.json()) as { access_token?: string }
  if (res.status !== 200 || body.access_token === undefined) throw new Error(`token endpoint answered ${res.status}`)
  return body.access_token
}

/** A cookie jar for the provider (its login is a browser's conversation). */
class Jar {
  readonly #c = new Map<string, string>()
  take(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const eq = (pair as string).indexOf('=')
      this.#c.set((pair as string).slice(0, eq), (pair as string).slice(eq + 1))
    }
  }
  header(): string {
    return [...this.#c].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

/**
 * Follow the provider from an authorization URL to gatehouse's callback, signing in as `login`
 * on its login form; returns the callback URL (with code and state), never calling it.
 */
export async function providerLogin(authorize: string, login: string, callbackPrefix: string): Promise<URL> {
  // A fresh browser profile each time: no provider session, so its login form always shows.
  const jar = new Jar()
  let url = authorize
  for (let i = 0; i < 10; i++) {
    if (url.startsWith(callbackPrefix)) return new URL(url)
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.take(res)
    const loc = res.headers.get('location')
    if (loc !== null) {
      url = new URL(loc, url).toString()
      continue
    }
    const page = await res.text()
    const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1]
    if (action === undefined || !/name="login"/.test(page)) throw new Error(`expected the provider's login form at ${url}`)
    const post = await fetch(new URL(action, url), { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ prompt: 'login', login, password: 'any-password' }) })
    jar.take(post)
    url = new URL(post.headers.get('location') as string, url).toString()
  }
  throw new Error('the provider never sent the browser back')
}
