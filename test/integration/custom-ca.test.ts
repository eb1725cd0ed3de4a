/**
 * Outbound trust: an https upstream and an https issuer with certificates from a private CA
 * (here: self-signed). Without the CA configured gatehouse refuses them (verification is never
 * switched off); with `upstream.caFile` / `authentication.oidc.certificate` it works.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy } from '../helpers/proxy.ts'

describe('custom CA for outbound TLS', () => {
  const pair = generateSelfSignedCertificate({ commonName: 'private-ca-test' })
  let dir: string
  let caFile: string
  let upstream: https.Server
  let upstreamUrl: string
  let issuerServer: https.Server
  let httpsIssuer: string
  let keys: TestIssuer

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gh-ca-'))
    caFile = path.join(dir, 'ca.pem')
    writeFileSync(caFile, pair.certPem)
    upstream = https.createServer({ cert: pair.certPem, key: pair.keyPem }, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ user: req.headers['x-forwarded-user'] }))
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    // An https issuer whose documents come from a test issuer's keys.
    keys = await startIssuer()
    issuerServer = https.createServer({ cert: pair.certPem, key: pair.keyPem }, (req, res) => {
      const body = req.url === '/.well-known/openid-configuration' ? { issuer: httpsIssuer, jwks_uri: `${httpsIssuer}/jwks`, id_token_signing_alg_values_supported: ['RS256'] } : req.url === '/jwks' ? keys.keys.jwks() : undefined
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body ?? {}))
    })
    await new Promise<void>((r) => issuerServer.listen(0, '127.0.0.1', r))
    httpsIssuer = `https://127.0.0.1:${(issuerServer.address() as AddressInfo).port}`
  })
  after(async () => {
    upstream.closeAllConnections()
    issuerServer.closeAllConnections()
    await new Promise<void>((r) => upstream.close(() => r()))
    await new Promise<void>((r) => issuerServer.close(() => r()))
    await keys.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('an https upstream with a private CA: 502 without upstream.caFile, 200 with it', async () => {
    const without = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: upstreamUrl } })
    try {
      const r = await without.request('/x')
      assert.equal(r.status, 502)
      assert.equal(r.json().reason, 'ERR_UPSTREAM_UNAVAILABLE')
    } finally {
      await without.stop()
    }
    const withCa = await startProxy({ env: { GATEHOUSE_UPSTREAM_URL: upstreamUrl }, yaml: `upstream:\n  caFile: ${caFile}\n` })
    try {
      const r = await withCa.request('/x')
      assert.equal(r.status, 200, r.text)
      assert.equal(r.json().user, 'anonymous')
    } finally {
      await withCa.stop()
    }
  })

  const oidcEnv = (certificate?: string): Record<string, string> => ({
    GATEHOUSE_UPSTREAM_URL: upstreamUrl,
    AUTHENTICATION_OIDC_ENABLED: 'true',
    AUTHENTICATION_OIDC_ISSUER: httpsIssuer,
    AUTHENTICATION_OIDC_CLIENT_ID: 'gatehouse',
    AUTHENTICATION_OIDC_USERNAME_CLAIM: 'sub',
    ...(certificate === undefined ? {} : { AUTHENTICATION_OIDC_CERTIFICATE: certificate }),
  })
  const ca = `upstream:\n  caFile: ${'CAFILE'}\n`

  it('an https issuer with a private CA: keys unavailable (503) without the certificate', async () => {
    const gh = await startProxy({ env: oidcEnv(), yaml: ca.replace('CAFILE', caFile) })
    try {
      const r = await gh.request('/x', { token: await keys.sign({ iss: httpsIssuer, sub: 'u' }) })
      assert.equal(r.status, 503)
      const ready = (await gh.admin('/readyz')).json()
      assert.equal(ready.checks.issuers[0].ready, false)
      assert.deepEqual(ready.checks.store, { kind: 'file' }, 'the embedded store is named too')
      assert.match(ready.checks.issuers[0].lastError, /certificate|self[- ]signed/i)
    } finally {
      await gh.stop()
    }
  })

  it('a CA set at runtime (security ca-cert set) reaches the issuer’s key fetches without a restart', async () => {
    const gh = await startProxy({
      env: { ...oidcEnv(), GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: 'Ca-runtime-pw1' },
      yaml: `${ca.replace('CAFILE', caFile)}authentication:\n  oidc:\n    jwks:\n      cooldown: 200ms\n`,
    })
    try {
      const token = await keys.sign({ iss: httpsIssuer, sub: 'later' })
      assert.equal((await gh.request('/x', { token })).status, 503)
      const login = await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: 'Ca-runtime-pw1' }) })
      const admin = login.json().data.access_token as string
      assert.equal((await gh.admin('/api/v2/security/caCert', { method: 'PUT', token: admin, body: JSON.stringify({ certificate: pair.certPem }) })).status, 200)
      let status = 0
      for (let i = 0; i < 40 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 250))
        status = (await gh.request('/x', { token })).status
      }
      assert.equal(status, 200)
    } finally {
      await gh.stop()
    }
  })

  for (const [form, value] of [
    ['inline PEM', () => pair.certPem],
    ['a file path', () => caFile],
  ] as const) {
    it(`an https issuer with AUTHENTICATION_OIDC_CERTIFICATE as ${form}: tokens verify`, async () => {
      const gh = await startProxy({ env: oidcEnv(value()), yaml: ca.replace('CAFILE', caFile) })
      try {
        const r = await gh.request('/x', { token: await keys.sign({ iss: httpsIssuer, sub: 'ca-user' }) })
        assert.equal(r.status, 200, r.text)
        assert.equal(r.json().user, 'ca-user')
      } finally {
        await gh.stop()
        assertNoSecretsInLogs(gh.logs)
      }
    })
  }
})
