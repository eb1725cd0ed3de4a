/**
 * `security tls` and `security ca-cert` through the admin API: applied to the running process,
 * no restart, connections verified (never switched off), and kept across a restart.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { generateSelfSignedCertificate } from '../../src/tls/selfsigned.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'

const PW = 'Runtime-admin-1'

function peerFingerprint(url: string, ca: string[]): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), servername: 'localhost', ca }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? ''
      s.end()
      resolve(fp)
    })
    s.once('error', reject)
  })
}

describe('runtime TLS certificate and CA certificate', () => {
  const upstreamPair = generateSelfSignedCertificate({ commonName: 'private upstream' })
  const newPair = generateSelfSignedCertificate({ commonName: 'rotated by api' })
  const otherPair = generateSelfSignedCertificate({ commonName: 'other' })
  let upstream: https.Server
  let gh: TestProxy
  let token: string
  let state: string

  before(async () => {
    upstream = https.createServer({ cert: upstreamPair.certPem, key: upstreamPair.keyPem }, (_req, res) => {
      res.writeHead(200)
      res.end('private upstream')
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    state = mkdtempSync(path.join(tmpdir(), 'gh-rt-'))
    usedSecrets.add(PW)
    gh = await startProxy({ env: { GATEHOUSE_STATE_DIR: state, GATEHOUSE_UPSTREAM_URL: `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: PW, AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'true' } })
    const r = await gh.admin('/api/v2/login', { method: 'POST', body: JSON.stringify({ username: 'admin', password: PW }) })
    token = r.json().data.access_token
    usedSecrets.add(token)
  })
  after(async () => {
    await gh.stop()
    upstream.closeAllConnections()
    await new Promise<void>((r) => upstream.close(() => r()))
    rmSync(state, { recursive: true, force: true })
    assertNoSecretsInLogs(gh.logs)
  })

  it('ca-cert set makes a private-CA upstream reachable without a restart; unset removes the trust again', async () => {
    assert.equal((await gh.request('/x')).status, 502)
    const set = await gh.admin('/api/v2/security/caCert', { method: 'PUT', token, body: JSON.stringify({ certificate: upstreamPair.certPem }) })
    assert.equal(set.status, 200, set.text)
    assert.equal(set.json().data.set, true)
    const ok = await gh.request('/x')
    assert.equal(ok.status, 200)
    assert.equal(ok.text, 'private upstream')
    assert.equal((await gh.admin('/api/v2/security/caCert', { method: 'DELETE', token })).json().data.set, false)
    assert.equal((await gh.request('/x')).status, 502)
    assert.equal((await gh.admin('/api/v2/security/caCert', { method: 'PUT', token, body: JSON.stringify({ certificate: 'not a pem' }) })).status, 400)
  })

  it('tls set: the next handshake on both listeners presents the new certificate, no restart; a mismatched key is refused and the old one stays', async () => {
    const selfSigned = gh.ca as string
    const before = await peerFingerprint(gh.url, [selfSigned])
    const bad = await gh.admin('/api/v2/tls', { method: 'POST', token, body: JSON.stringify({ certificate: newPair.certPem, private_key: otherPair.keyPem }) })
    assert.equal(bad.status, 400)
    assert.equal(bad.json().reason, 'ERR_BAD_CERTIFICATE')
    assert.match(bad.json().message, /does not match/)
    assert.equal(await peerFingerprint(gh.url, [selfSigned]), before)
    usedSecrets.add(newPair.keyPem.split('\n')[1] as string)
    const set = await gh.admin('/api/v2/tls', { method: 'POST', token, body: JSON.stringify({ certificate: newPair.certPem, private_key: newPair.keyPem }) })
    assert.equal(set.status, 200, set.text)
    assert.equal(set.json().data.source, 'api')
    const expected = new X509Certificate(newPair.certPem).fingerprint256
    assert.equal(await peerFingerprint(gh.url, [newPair.certPem]), expected)
    assert.equal(await peerFingerprint(gh.adminUrl as string, [newPair.certPem]), expected)
  })

  it('the API-set certificate survives a restart; tls unset returns to the self-signed one', async () => {
    const expected = new X509Certificate(newPair.certPem).fingerprint256
    const again = await startProxy({ env: { GATEHOUSE_STATE_DIR: state, GATEHOUSE_LOCAL_ENABLED: 'true', GATEHOUSE_ADMIN_PASSWORD: PW } })
    // The test helper's client trusts only the self-signed certificate; this one trusts both.
    const agent = new Agent({ connect: { ca: [newPair.certPem, again.ca as string] } })
    try {
      assert.equal(await peerFingerprint(again.url, [newPair.certPem]), expected)
      const login = await request(`${again.adminUrl}/api/v2/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: PW }), dispatcher: agent })
      const t = ((await login.body.json()) as { data: { access_token: string } }).data.access_token
      usedSecrets.add(t)
      const r = await request(`${again.adminUrl}/api/v2/tls`, { method: 'DELETE', headers: { authorization: `Bearer ${t}` }, dispatcher: agent })
      assert.equal(r.statusCode, 200)
      assert.equal(((await r.body.json()) as { data: { source: string } }).data.source, 'self-signed')
      assert.equal(await peerFingerprint(again.url, [again.ca as string]), new X509Certificate(again.ca as string).fingerprint256)
    } finally {
      await agent.close()
      await again.stop()
      assertNoSecretsInLogs(again.logs)
    }
  })
})

