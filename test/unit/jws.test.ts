import assert from 'node:assert/strict'
import { generateKeyPairSync, sign, constants, type KeyObject } from 'node:crypto'
import { describe, it } from 'node:test'
import type { JWK } from 'jose'
import { keyForAlg, verifySignature } from '../../src/auth/oidc/jws.ts'
import { checkClaims } from '../../src/auth/oidc/verifier.ts'

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
function jws(alg: string, priv: KeyObject, opts: { dsa?: 'der' | 'ieee-p1363' } = {}): string {
  const input = `${b64({ alg })}.${b64({ sub: 'x' })}`
  const data = Buffer.from(input)
  const hash = alg === 'EdDSA' ? null : `sha${alg.slice(2)}`
  let sig: Buffer
  if (alg.startsWith('PS')) sig = sign(hash, data, { key: priv, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 })
  else if (alg.startsWith('ES')) sig = sign(hash, data, { key: priv, dsaEncoding: opts.dsa ?? 'ieee-p1363' })
  else sig = sign(hash, data, priv)
  return `${input}.${sig.toString('base64url')}`
}
const pubJwk = (k: KeyObject): JWK => k.export({ format: 'jwk' }) as JWK

describe('node:crypto JWS verification keeps jose’s rules', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
  const ed = generateKeyPairSync('ed25519')

  for (const [alg, pair] of [['RS256', rsa], ['RS512', rsa], ['PS256', rsa], ['ES256', p256], ['ES384', p384], ['EdDSA', ed]] as const) {
    it(`${alg}: a good signature verifies, a flipped bit does not`, () => {
      const key = keyForAlg(pubJwk(pair.publicKey), alg)
      assert.ok(typeof key !== 'string', String(key))
      const t = jws(alg, pair.privateKey)
      assert.equal(verifySignature(t, alg, key), true)
      const bad = t.slice(0, -2) + (t.at(-2) === 'A' ? 'B' : 'A') + t.at(-1)
      assert.equal(verifySignature(bad, alg, key), false)
    })
  }

  it('refuses keys that do not fit the algorithm: RSA for ES256, P-384 for ES256, EC for RS256, a JWK whose alg differs, RSA under 2048 bits', () => {
    assert.match(String(keyForAlg(pubJwk(rsa.publicKey), 'ES256')), /EC key/)
    assert.match(String(keyForAlg(pubJwk(p384.publicKey), 'ES256')), /prime256v1/)
    assert.match(String(keyForAlg(pubJwk(p256.publicKey), 'RS256')), /RSA key/)
    assert.match(String(keyForAlg({ ...pubJwk(rsa.publicKey), alg: 'RS256' }, 'PS256')), /not PS256/)
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 })
    assert.match(String(keyForAlg(pubJwk(weak.publicKey), 'RS256')), /2048/)
    assert.match(String(keyForAlg(pubJwk(ed.publicKey), 'RS256')), /RSA key/)
  })

  it('ECDSA signatures must be JOSE’s fixed-length r‖s, not DER', () => {
    const key = keyForAlg(pubJwk(p256.publicKey), 'ES256') as KeyObject
    assert.equal(verifySignature(jws('ES256', p256.privateKey, { dsa: 'der' }), 'ES256', key), false)
  })

  it('an RS256 signature does not pass as PS256 and vice versa', () => {
    const key = keyForAlg(pubJwk(rsa.publicKey), 'PS256') as KeyObject
    assert.equal(verifySignature(jws('RS256', rsa.privateKey), 'PS256', key), false)
    assert.equal(verifySignature(jws('PS256', rsa.privateKey), 'RS256', key), false)
  })
})

describe('checkClaims (clock given)', () => {
  const base = { issuer: 'https://i', audience: 'c', nowSeconds: 1_000_000, toleranceSeconds: 60 }
  const ok = { iss: 'https://i', aud: 'c', exp: 1_000_100 }
  const code = (f: () => void): string | undefined => {
    try {
      f()
      return undefined
    } catch (e) {
      return (e as { code: string }).code
    }
  }
  it('accepts a valid set, aud as a string or an array', () => {
    assert.equal(code(() => checkClaims(ok, base)), undefined)
    assert.equal(code(() => checkClaims({ ...ok, aud: ['x', 'c'] }, base)), undefined)
    assert.equal(code(() => checkClaims({ ...ok, aud: 'x' }, { ...base, audience: undefined })), undefined)
  })
  it('refuses iss, aud, missing or non-numeric exp, exp past the tolerance, nbf/iat in the future beyond it', () => {
    assert.equal(code(() => checkClaims({ ...ok, iss: 'https://i/' }, base)), 'ERR_INVALID_TOKEN')
    assert.equal(code(() => checkClaims({ ...ok, aud: ['x'] }, base)), 'ERR_INVALID_TOKEN')
    assert.equal(code(() => checkClaims({ ...ok, exp: undefined }, base)), 'ERR_INVALID_TOKEN')
    assert.equal(code(() => checkClaims({ ...ok, exp: '1000100' as unknown as number }, base)), 'ERR_INVALID_TOKEN')
    assert.equal(code(() => checkClaims({ ...ok, exp: 1_000_000 - 60 }, base)), 'ERR_TOKEN_EXPIRED')
    assert.equal(code(() => checkClaims({ ...ok, exp: 1_000_000 - 59 }, base)), undefined, 'within the tolerance')
    assert.equal(code(() => checkClaims({ ...ok, nbf: 1_000_061 }, base)), 'ERR_INVALID_TOKEN')
    assert.equal(code(() => checkClaims({ ...ok, nbf: 1_000_060 }, base)), undefined)
    assert.equal(code(() => checkClaims({ ...ok, iat: 1_000_061 }, base)), 'ERR_INVALID_TOKEN')
  })
})
