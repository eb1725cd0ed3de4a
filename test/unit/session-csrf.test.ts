/**
 * The CSRF rule of SPEC §10: a state-changing request must come from gatehouse's own origin and
 * carry the session's token.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkCsrf, type CsrfInput } from '../../src/session/csrf.ts'

const ORIGIN = 'https://gh.example:14000'
const TOKEN = 'c3JmLXRva2VuLW9mLXRoZS1zZXNzaW9uLTAxMjM0NTY3'
const base: CsrfInput = { method: 'POST', secFetchSite: 'same-origin', origin: ORIGIN, expectedOrigin: ORIGIN, submittedToken: TOKEN, sessionToken: TOKEN }
const check = (o: Partial<CsrfInput>): ReturnType<typeof checkCsrf> => checkCsrf({ ...base, ...o })

describe('checkCsrf', () => {
  it('safe methods pass without origin or token', () => {
    for (const method of ['GET', 'HEAD', 'OPTIONS', 'get']) assert.deepEqual(check({ method, secFetchSite: 'cross-site', origin: 'https://evil.example', submittedToken: undefined }), { ok: true }, method)
  })

  // method × Sec-Fetch-Site × Origin, token right; expected outcome.
  const matrix: readonly [string | undefined, string | undefined, true | string][] = [
    ['same-origin', ORIGIN, true],
    ['same-origin', undefined, true],
    [undefined, ORIGIN, true], // browsers without Fetch Metadata (Safari before 16.4)
    ['same-origin', 'null', true], // own form post under Referrer-Policy: no-referrer
    [undefined, 'null', 'cross-site'], // sandboxed frame or data: document of any site
    ['cross-site', 'null', 'cross-site'],
    ['same-site', 'null', 'cross-site'],
    ['same-site', ORIGIN, 'cross-site'],
    ['cross-site', ORIGIN, 'cross-site'],
    ['none', ORIGIN, 'cross-site'],
    ['same-origin', 'https://evil.example', 'cross-site'], // both must agree
    [undefined, 'https://evil.example', 'cross-site'],
    [undefined, 'https://gh.example:14001', 'cross-site'], // another port is another origin
    [undefined, 'http://gh.example:14000', 'cross-site'], // another scheme too
    [undefined, 'https://gh.example:14000/', 'cross-site'], // an Origin has no path
    ['cross-site', undefined, 'cross-site'],
    [undefined, undefined, 'no-origin'],
  ]
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    for (const [site, origin, want] of matrix) {
      it(`${method} Sec-Fetch-Site=${site ?? '-'} Origin=${origin ?? '-'} → ${want === true ? 'allow' : want}`, () => {
        assert.deepEqual(check({ method, secFetchSite: site, origin }), want === true ? { ok: true } : { ok: false, reason: want })
      })
    }
  }

  it('the token: missing, empty, wrong, a prefix, longer — refused; the session must have one', () => {
    assert.deepEqual(check({ submittedToken: undefined }), { ok: false, reason: 'token-missing' })
    assert.deepEqual(check({ submittedToken: '' }), { ok: false, reason: 'token-missing' })
    for (const t of ['x', TOKEN.slice(0, -1), `${TOKEN}A`, TOKEN.toLowerCase()]) assert.deepEqual(check({ submittedToken: t }), { ok: false, reason: 'token-mismatch' }, t)
    assert.deepEqual(check({ sessionToken: '', submittedToken: '' }), { ok: false, reason: 'token-missing' })
    assert.deepEqual(check({ sessionToken: '', submittedToken: 'x' }), { ok: false, reason: 'token-mismatch' })
  })

  it('the origin check runs before the token (a cross-site post with the right token is still refused)', () => {
    assert.deepEqual(check({ secFetchSite: 'cross-site' }), { ok: false, reason: 'cross-site' })
  })

  it('expectedOrigin must be an origin (programmer error)', () => {
    assert.throws(() => check({ expectedOrigin: 'https://gh.example:14000/ui/' }), TypeError)
    assert.throws(() => check({ expectedOrigin: 'gh.example' }), TypeError)
  })
})
