/**
 * panva's oidc-provider (a certified OpenID provider) in-process on 127.0.0.1:0, issuing RS256
 * JWT access tokens by the client_credentials grant — exactly what Weaviate's clients request.
 *
 * Without resource indicators oidc-provider issues opaque tokens; `defaultResource` supplies the
 * resource when the client sends none (weaviate-client never does) and `getResourceServerInfo`
 * makes its tokens JWTs whose `aud` is the client id (what Weaviate/gatehouse check).
 */
import { generateKeyPairSync } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export const CLIENT_ID = 'gatehouse-test-client'
export const CLIENT_SECRET = 'gatehouse-test-secret-0f9a'
const RESOURCE = 'urn:gatehouse:weaviate'

export interface OidcProvider {
  issuer: string
  tokenEndpoint: string
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
  const server = http.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'op-rs256', alg: 'RS256', use: 'sig' }
  const provider = new Provider(issuer, {
    clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_post' }],
    jwks: { keys: [jwk] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, _client: unknown, oneOf: string | undefined) => oneOf ?? RESOURCE,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget()
          return { scope: 'openid profile email', audience: CLIENT_ID, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }
        },
      },
    },
    extraTokenClaims: async () => ({ ...opts.extraClaims }),
    ttl: { ClientCredentials: 300 },
    clientBasedCORS: () => true,
  })
  server.on('request', provider.callback())
  return {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
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
