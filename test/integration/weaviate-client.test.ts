/**
 * The real clients: panva's oidc-provider as the issuer (client_credentials → JWT access
 * tokens), and the real weaviate-client (npm) connecting to gatehouse over TLS with ApiKey and
 * with AuthClientCredentials — discovering the issuer through gatehouse's
 * /v1/.well-known/openid-configuration — in front of a recording Weaviate stand-in.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CLIENT_ID, CLIENT_SECRET, clientCredentialsToken, startOidcProvider, type OidcProvider } from '../helpers/oidcProvider.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { runWeaviateFixture } from '../helpers/weaviateClient.ts'
import { closedPort, startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const ADMIN_KEY = 'wc-admin-key-4f1e'
const READER_KEY = 'wc-reader-key-9b2c'

function runClient(gh: TestProxy, env: Record<string, string>): Promise<Record<string, unknown>> {
  return runWeaviateFixture('run.ts', gh, env)
}

describe('real clients: oidc-provider and weaviate-client through gatehouse', () => {
  let op: OidcProvider
  let up: RecordingUpstream
  let gh: TestProxy
  let grpcPort: number

  before(async () => {
    usedSecrets.add(CLIENT_SECRET)
    op = await startOidcProvider()
    up = await startUpstream()
    grpcPort = await closedPort()
    gh = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: up.url,
        GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${ADMIN_KEY},${READER_KEY}`,
        AUTHENTICATION_APIKEY_USERS: 'admin-svc,reader-svc',
        AUTHENTICATION_OIDC_ENABLED: 'true',
        AUTHENTICATION_OIDC_ISSUER: op.issuer,
        AUTHENTICATION_OIDC_CLIENT_ID: CLIENT_ID,
        AUTHENTICATION_OIDC_USERNAME_CLAIM: 'client_id',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: `admin-svc,${CLIENT_ID}`,
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'reader-svc',
      },
    })
  })
  after(async () => {
    await gh.stop()
    await up.close()
    await op.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('oidc-provider: a client_credentials JWT access token works through gatehouse', async () => {
    up.reset()
    const token = await clientCredentialsToken(op)
    usedSecrets.add(token)
    const r = await gh.request('/v1/objects', { method: 'POST', token, body: '{}' })
    assert.equal(r.status, 200, r.text)
    assert.equal(up.requests[0]?.headers['x-forwarded-user'], CLIENT_ID)
    assert.equal(up.requests[0]?.headers['x-forwarded-auth-method'], 'oidc')
  })

  it('weaviate-client with ApiKey: REST reaches the stand-in as the key’s user; a read-only user’s write is refused', async () => {
    up.reset()
    const admin = await runClient(gh, { MODE: 'apikey', API_KEY: ADMIN_KEY, GRPC_PORT: String(grpcPort) })
    assert.equal(admin.error, undefined, String(admin.error))
    const meta = admin.meta as { url: string; headers: Record<string, string> }
    assert.equal(meta.url, '/v1/meta')
    assert.equal(meta.headers['x-forwarded-user'], 'admin-svc')
    assert.equal(meta.headers.authorization, undefined, 'the client key stays at gatehouse')
    assert.match(meta.headers['x-weaviate-client'] ?? '', /weaviate-client-typescript/)
    assert.equal(admin.delete, 'ok')

    up.reset()
    const reader = await runClient(gh, { MODE: 'apikey', API_KEY: READER_KEY, GRPC_PORT: String(grpcPort) })
    assert.equal((reader.meta as { headers: Record<string, string> }).headers['x-forwarded-user'], 'reader-svc')
    assert.equal(reader.delete, 'WeaviateInsufficientPermissionsError')
    assert.deepEqual(up.requests.map((r) => `${r.method} ${r.url}`), ['GET /v1/meta'], 'the refused DELETE never reached the upstream')
  })

  it('weaviate-client with AuthClientCredentials: discovers the issuer via gatehouse, gets a token from oidc-provider, and is let through', async () => {
    up.reset()
    const r = await runClient(gh, { MODE: 'oidc', CLIENT_SECRET, GRPC_PORT: String(grpcPort) })
    assert.equal(r.error, undefined, String(r.error))
    const meta = r.meta as { url: string; headers: Record<string, string> }
    assert.equal(meta.headers['x-forwarded-user'], CLIENT_ID)
    assert.equal(meta.headers['x-forwarded-auth-method'], 'oidc')
    assert.equal(r.delete, 'ok')
    // The discovery request was answered by gatehouse itself, never forwarded.
    assert.ok(up.requests.every((x) => !x.url.includes('.well-known')))
    const access = gh.logs.filter((l) => l.includes('"/v1/.well-known/openid-configuration"'))
    assert.ok(access.length >= 1, 'the client asked gatehouse for the OIDC configuration')
  })
})
