/**
 * Session ids (256 bits, base64url, only the SHA-256 stored) and the sealed OIDC token slot.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { hashSessionId, isSessionId, newCsrfToken, newSessionId, SESSION_ID_LENGTH } from '../../src/session/id.ts'
import { openTokens, sealTokens } from '../../src/session/tokens.ts'

describe('session ids', () => {
  it('are 256 random bits in base64url, never repeated', () => {
    const ids = new Set(Array.from({ length: 1000 }, newSessionId))
    assert.equal(ids.size, 1000)
    for (const id of ids) {
      assert.equal(id.length, SESSION_ID_LENGTH)
      assert.equal(Buffer.from(id, 'base64url').length, 32)
      assert.ok(isSessionId(id))
    }
  })
  it('isSessionId refuses anything else before a store lookup', () => {
    for (const v of [undefined, '', 'short', `${newSessionId()}x`, `${newSessionId().slice(0, 42)}=`, `${newSessionId().slice(0, 42)}+`, 42]) assert.equal(isSessionId(v), false, String(v))
  })
  it('the store key is the SHA-256 of the id, not the id', () => {
    const id = newSessionId()
    assert.equal(hashSessionId(id), createHash('sha256').update(id).digest('base64url'))
    assert.notEqual(hashSessionId(id), id)
  })
  it('CSRF tokens are 256 random bits too', () => {
    const t = newCsrfToken()
    assert.equal(Buffer.from(t, 'base64url').length, 32)
    assert.notEqual(t, newCsrfToken())
  })
})

describe('sealed OIDC tokens', () => {
  const tokens = { refreshToken: 'rt-secret-value', idToken: 'eyJ.id.token', expiresAt: 1_700_000_000_000 }
  it('open with the session id they were sealed for', () => {
    const id = newSessionId()
    const sealed = sealTokens(id, tokens)
    assert.deepEqual(openTokens(id, sealed), tokens)
    assert.ok(!sealed.includes('rt-secret-value'))
    assert.notEqual(sealTokens(id, tokens), sealed, 'a fresh IV each time')
  })
  it('do not open with another id, nor when altered', () => {
    const id = newSessionId()
    const sealed = sealTokens(id, tokens)
    assert.equal(openTokens(newSessionId(), sealed), undefined)
    const parts = sealed.split('.')
    const body = Buffer.from(parts[2] as string, 'base64url')
    body[0] = (body[0] as number) ^ 1
    assert.equal(openTokens(id, [parts[0], parts[1], body.toString('base64url'), parts[3]].join('.')), undefined)
    assert.equal(openTokens(id, [parts[0], parts[1], parts[2], (parts[3] as string).slice(0, 8)].join('.')), undefined, 'a truncated tag')
    assert.equal(openTokens(id, `v2.${parts.slice(1).join('.')}`), undefined)
    assert.equal(openTokens(id, 'garbage'), undefined)
  })
})
