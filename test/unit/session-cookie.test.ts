/**
 * gatehouse's own cookies: `__Host-` serialization, strict reading (RFC 6265 §4.2.1, duplicates
 * refused), and stripping before a request is forwarded (every other cookie byte for byte).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { clearHostCookie, readCookie, serializeHostCookie, stripCookies } from '../../src/session/cookie.ts'

const NAME = '__Host-gatehouse'
const ID = 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE'

describe('serializeHostCookie', () => {
  it('writes Secure, HttpOnly, Path=/ and the SameSite asked for, and never a Domain', () => {
    assert.equal(serializeHostCookie(NAME, ID, { sameSite: 'Strict' }), `${NAME}=${ID}; Path=/; Secure; HttpOnly; SameSite=Strict`)
    const lax = serializeHostCookie(NAME, ID, { sameSite: 'Lax', maxAgeSeconds: 3600 })
    assert.equal(lax, `${NAME}=${ID}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=3600`)
    assert.doesNotMatch(lax, /domain/i)
  })
  it('clearHostCookie expires it with the same attributes', () => {
    assert.equal(clearHostCookie(NAME, 'Strict'), `${NAME}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`)
  })
  it('refuses a name without the __Host- prefix, a value a cookie cannot carry, a bad SameSite or Max-Age', () => {
    assert.throws(() => serializeHostCookie('gatehouse', ID, { sameSite: 'Strict' }), TypeError)
    assert.throws(() => serializeHostCookie('__Host-a b', ID, { sameSite: 'Strict' }), TypeError)
    for (const v of ['a;b', 'a b', 'a,b', 'a"b', 'a\\b', 'a\r\nSet-Cookie: x=y', 'é']) assert.throws(() => serializeHostCookie(NAME, v, { sameSite: 'Strict' }), TypeError, v)
    assert.throws(() => serializeHostCookie(NAME, ID, { sameSite: 'None' as 'Strict' }), TypeError)
    assert.throws(() => serializeHostCookie(NAME, ID, { sameSite: 'Lax', maxAgeSeconds: -1 }), TypeError)
    assert.throws(() => serializeHostCookie(NAME, ID, { sameSite: 'Lax', maxAgeSeconds: 1.5 }), TypeError)
  })
})

describe('readCookie (RFC 6265 §4.2.1)', () => {
  it('finds the cookie among others, first, middle or last', () => {
    for (const h of [`${NAME}=${ID}`, `${NAME}=${ID}; a=1`, `a=1; ${NAME}=${ID}; b=2`, `a=1; ${NAME}=${ID}`]) assert.deepEqual(readCookie(h, NAME), { ok: true, value: ID }, h)
  })
  it('joins several Cookie fields (HTTP/2 may split them)', () => {
    assert.deepEqual(readCookie(['a=1', `${NAME}=${ID}`], NAME), { ok: true, value: ID })
    assert.deepEqual(readCookie([`${NAME}=x`, `${NAME}=y`], NAME), { ok: false, reason: 'duplicate' })
  })
  it('absent: no header, another name, a name that only starts alike, a different case', () => {
    assert.deepEqual(readCookie(undefined, NAME), { ok: false, reason: 'absent' })
    assert.deepEqual(readCookie('', NAME), { ok: false, reason: 'absent' })
    assert.deepEqual(readCookie('a=1; b=2', NAME), { ok: false, reason: 'absent' })
    assert.deepEqual(readCookie(`${NAME}x=${ID}`, NAME), { ok: false, reason: 'absent' })
    assert.deepEqual(readCookie(`__host-gatehouse=${ID}`, NAME), { ok: false, reason: 'absent' })
  })
  it('a duplicate yields no value: picking one would let a planted cookie win (session fixation)', () => {
    assert.deepEqual(readCookie(`${NAME}=${ID}; ${NAME}=${ID}`, NAME), { ok: false, reason: 'duplicate' })
    assert.deepEqual(readCookie(`${NAME}=attacker; a=1; ${NAME}=${ID}`, NAME), { ok: false, reason: 'duplicate' })
    assert.deepEqual(readCookie(`${NAME}=${ID}; ${NAME} =other`, NAME), { ok: false, reason: 'duplicate' })
  })
  it('malformed: characters outside cookie-octet, whitespace around =, an unbalanced quote', () => {
    for (const h of [`${NAME}=a b`, `${NAME}=a,b`, `${NAME}=a\\b`, `${NAME}="abc`, `${NAME} =${ID}`, `${NAME}=\u00e9`]) assert.deepEqual(readCookie(h, NAME), { ok: false, reason: 'malformed' }, h)
  })
  it('accepts the quoted form and surrounding OWS, and returns the bare value', () => {
    assert.deepEqual(readCookie(`a=1;  ${NAME}="${ID}"\t`, NAME), { ok: true, value: ID })
    assert.deepEqual(readCookie(`${NAME}=`, NAME), { ok: true, value: '' })
  })
  it('other cookies may be malformed without affecting ours (they belong to the upstream application)', () => {
    assert.deepEqual(readCookie(`json={"a": 1, "b": 2}; noequals; ${NAME}=${ID}`, NAME), { ok: true, value: ID })
  })
})

describe('stripCookies', () => {
  const names = [NAME, '__Host-gatehouse-signin']
  it('removes gatehouse cookies wherever they are and keeps every other cookie byte for byte', () => {
    assert.equal(stripCookies(`a=1; ${NAME}=${ID}; b=2`, names), 'a=1; b=2')
    assert.equal(stripCookies(`${NAME}=${ID}; b=2`, names), 'b=2')
    assert.equal(stripCookies(`a=1; ${NAME}=${ID}`, names), 'a=1')
    assert.equal(stripCookies(`a="x y";  weird ; ${NAME}=${ID};b=%20=; json={"k": [1,2]}`, names), 'a="x y";  weird ;b=%20=; json={"k": [1,2]}')
  })
  it('removes every spelling: other case, whitespace around the name, duplicates, both names', () => {
    assert.equal(stripCookies(`__HOST-GATEHOUSE=x; a=1; ${NAME} =y; \t${NAME}=z; __Host-gatehouse-signin=s`, names), 'a=1')
  })
  it('drops the header when nothing remains', () => {
    assert.equal(stripCookies(`${NAME}=${ID}`, names), undefined)
    assert.equal(stripCookies(`${NAME}=${ID};  ; ${NAME}=x`, names), undefined)
    assert.equal(stripCookies(undefined, names), undefined)
  })
  it('leaves a header without gatehouse cookies exactly as it was', () => {
    const h = 'session=abc; theme=dark; _ga=GA1.2.3'
    assert.equal(stripCookies(h, names), h)
    assert.equal(stripCookies(['a=1', `${NAME}=x`, 'b=2'], names), 'a=1; b=2')
  })
})
