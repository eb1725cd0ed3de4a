// The test OpenID issuer (test/helpers/issuer.ts) really serves discovery, JWKS and tokens, its
// attack tokens are ones a correct verifier (jose) rejects, and its faults and outages happen.
import { after, afterEach, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { createPublicKey } from 'node:crypto'
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK } from 'jose'
import { startIssuer, type TestIssuer } from '../helpers/issuer.ts'

const ALGS = ['RS256', 'ES256', 'PS256', 'EdDSA']

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url)
  return { status: r.status, body: (await r.json()) as Record<string, unknown> }
}

async function verifyWithServedJwks(iss: TestIssuer, token: string): Promise<unknown> {
  const { body } = await getJson(iss.jwksUrl)
  const set = createLocalJWKSet(body as { keys: JWK[] })
  return jwtVerify(token, set, { issuer: iss.url, audience: 'gatehouse', algorithms: ALGS })
}

describe('test issuer helper', () => {
  let iss: TestIssuer
  before(async () => {
    iss = await startIssuer({ path: '/realms/test' })
  })
  after(() => iss.close())
  afterEach(() => iss.resetFaults())

  it('serves discovery and JWKS, and its tokens verify', async () => {
    assert.match(iss.url, /^http:\/\/127\.0\.0\.1:\d+\/realms\/test$/)
    iss.resetHits()
    const d = await getJson(iss.discoveryUrl)
    assert.equal(d.body.issuer, iss.url)
    assert.equal(d.body.jwks_uri, iss.jwksUrl)
    assert.equal(d.body.token_endpoint, `${iss.url}/token`)
    assert.deepEqual(d.body.id_token_signing_alg_values_supported, ['RS256'])
    const j = await getJson(iss.jwksUrl)
    const keys = j.body.keys as JWK[]
    assert.equal(keys.length, 1)
    assert.deepEqual([keys[0]?.kid, keys[0]?.alg, keys[0]?.use, keys[0]?.d], [iss.keys.signingKid, 'RS256', 'sig', undefined])
    assert.deepEqual(iss.hits, { discovery: 1, jwks: 1, token: 0 })

    const { payload, protectedHeader } = (await verifyWithServedJwks(iss, await iss.sign({ sub: 'alice' }))) as Awaited<ReturnType<typeof jwtVerify>>
    assert.equal(payload.sub, 'alice')
    assert.equal(protectedHeader.typ, 'JWT')
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 300)
    assert.equal('exp' in decodeJwt(await iss.sign({ exp: undefined })), false)
    assert.equal(decodeProtectedHeader(await iss.sign({}, { header: { jku: 'https://x.invalid' } })).jku, 'https://x.invalid')
  })

  it('rotates: new kids are published and sign, removed ones leave the JWKS', async () => {
    const first = iss.keys.signingKid
    for (const alg of ['ES256', 'PS256', 'EdDSA', 'RS256'] as const) {
      const kid = await iss.keys.rotate(alg)
      assert.equal(iss.keys.signingKid, kid)
      const { body } = await getJson(iss.jwksUrl)
      assert.ok((body.keys as JWK[]).some((k) => k.kid === kid && k.alg === alg))
      const token = await iss.sign()
      assert.equal(decodeProtectedHeader(token).kid, kid)
      await verifyWithServedJwks(iss, token)
    }
    const algs = (await getJson(iss.discoveryUrl)).body.id_token_signing_alg_values_supported as string[]
    assert.deepEqual([...algs].sort(), ['ES256', 'EdDSA', 'PS256', 'RS256'])
    iss.keys.removeKey(first)
    assert.ok(!((await getJson(iss.jwksUrl)).body.keys as JWK[]).some((k) => k.kid === first))
    await assert.rejects(verifyWithServedJwks(iss, await iss.sign({}, { kid: first })), { code: 'ERR_JWKS_NO_MATCHING_KEY' })
    iss.keys.publish(first)
    iss.keys.setSigningKey(first)
  })

  it('builds attack tokens that jose rejects', async () => {
    const a = iss.attacks
    const good = await iss.sign()
    await verifyWithServedJwks(iss, good)
    // Each must fail for its own reason, not an incidental one (claims are valid in all of them).
    const forged: [string, string, string][] = [
      ['algNone', a.unsignedAlgNone(), 'ERR_JOSE_ALG_NOT_ALLOWED'],
      ['hs256Spki', a.hs256WithPublicKey(), 'ERR_JOSE_ALG_NOT_ALLOWED'],
      ['hs256Jwk', a.hs256WithPublicKey({}, 'jwk'), 'ERR_JOSE_ALG_NOT_ALLOWED'],
      ['unpublished', await a.signWithUnpublishedKey(), 'ERR_JWKS_NO_MATCHING_KEY'],
      ['unpublishedRealKid', await a.signWithUnpublishedKey({}, iss.keys.signingKid), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
      ['embeddedJwk', await a.withEmbeddedJwk(), 'ERR_JWKS_NO_MATCHING_KEY'],
      ['corrupt', a.corruptSignature(good), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
      ['psWithRsKey', await iss.sign({}, { alg: 'PS256' }), 'ERR_JWKS_NO_MATCHING_KEY'],
    ]
    const byName = new Map(forged.map(([n, t]) => [n, t]))
    assert.ok(byName.get('algNone')?.endsWith('.'))
    const embedded = decodeProtectedHeader(byName.get('embeddedJwk') ?? '')
    assert.deepEqual([embedded.jku, embedded.jwk?.kty], ['https://attacker.invalid/jwks.json', 'RSA'])
    for (const [name, token, code] of forged) {
      await assert.rejects(verifyWithServedJwks(iss, token), { code }, `${name} must be rejected with ${code}`)
    }

    const weak = await a.weakRsa()
    const wkid = decodeProtectedHeader(weak).kid ?? ''
    const served = ((await getJson(iss.jwksUrl)).body.keys as JWK[]).find((k) => k.kid === wkid)
    assert.ok(served, 'the weak key is published')
    assert.equal(createPublicKey({ key: served, format: 'jwk' }).asymmetricKeyDetails?.modulusLength, 1024)
    assert.equal(iss.keys.list().find((k) => k.kid === wkid)?.modulusLength, 1024)
    // jose itself refuses <2048-bit RSA — with a plain TypeError, not a JOSEError.
    await assert.rejects(verifyWithServedJwks(iss, weak), TypeError)

    const big = await a.oversized({}, 100_000)
    assert.ok(big.length >= 100_000 && big.length < 100_100)
    await verifyWithServedJwks(iss, big)
  })

  it('fault switches change responses, per target', async () => {
    iss.faults.status500 = true
    iss.faults.target = 'jwks'
    assert.equal((await fetch(iss.jwksUrl)).status, 500)
    assert.equal((await fetch(iss.discoveryUrl)).status, 200)
    iss.resetFaults()

    iss.faults.garbage = true
    const g = await fetch(iss.discoveryUrl)
    assert.equal(g.status, 200)
    await assert.rejects(g.json(), SyntaxError)
    iss.resetFaults()

    iss.faults.down = true
    await assert.rejects(fetch(iss.jwksUrl))
    iss.resetFaults()

    iss.faults.slowMs = 300
    const t0 = Date.now()
    assert.equal((await fetch(iss.jwksUrl)).status, 200)
    assert.ok(Date.now() - t0 >= 290)
    iss.resetFaults()

    // A small huge body arrives whole and is valid JSON...
    iss.faults.hugeBytes = 200_000
    const small = await fetch(iss.jwksUrl)
    assert.equal(small.headers.get('content-length'), null)
    assert.deepEqual(await small.json(), { keys: [] })
    // ...and a 50 MB one can be abandoned after the first megabyte.
    iss.faults.hugeBytes = 50 * 1024 * 1024
    const seen = await new Promise<number>((resolve, reject) => {
      http.get(iss.jwksUrl, (res) => {
        let n = 0
        res.on('data', (c: Buffer) => {
          n += c.length
          if (n >= 1024 * 1024) {
            res.destroy()
            resolve(n)
          }
        })
      }).on('error', reject)
    })
    assert.ok(seen >= 1024 * 1024 && seen < 50 * 1024 * 1024)
  })

  it('client_credentials issues verifiable tokens (basic and post auth)', async () => {
    const form = (o: Record<string, string>): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(o).toString(),
    })
    const post = await fetch(`${iss.url}/token`, form({ grant_type: 'client_credentials', client_id: 'test-client', client_secret: 'test-secret' }))
    const body = (await post.json()) as { access_token: string; token_type: string; expires_in: number }
    assert.equal(post.status, 200)
    assert.equal(body.token_type, 'Bearer')
    assert.equal(body.expires_in, 300)
    const { payload } = (await verifyWithServedJwks(iss, body.access_token)) as Awaited<ReturnType<typeof jwtVerify>>
    assert.equal(payload.sub, 'test-client')

    const basic = await fetch(`${iss.url}/token`, {
      ...form({ grant_type: 'client_credentials' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('test-client:test-secret').toString('base64')}` },
    })
    assert.equal(basic.status, 200)
    const bad = await fetch(`${iss.url}/token`, form({ grant_type: 'client_credentials', client_id: 'test-client', client_secret: 'nope' }))
    assert.equal(bad.status, 401)
  })
})

describe('test issuer outage', () => {
  it('stop() closes the port, start() reopens the same one', async () => {
    const iss = await startIssuer()
    try {
      const port = iss.port
      assert.equal((await fetch(iss.jwksUrl)).status, 200)
      await iss.stop()
      assert.equal(iss.listening, false)
      await assert.rejects(fetch(iss.jwksUrl), (e: Error & { cause?: { code?: string } }) => e.cause?.code === 'ECONNREFUSED')
      await iss.start()
      assert.equal(iss.port, port)
      assert.equal((await fetch(iss.jwksUrl)).status, 200)
    } finally {
      await iss.close()
    }
  })
})
