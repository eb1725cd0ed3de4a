/**
 * The pure parts of the browser sign-in: which requests are page loads (and so may be sent to
 * sign in), the flow cookie that binds a sign-in to the browser (state and CSRF token as hashes
 * of its secret, the pending data sealed, an expiry), PKCE S256, and the Cookie filter that keeps
 * gatehouse's cookies from the upstream. Only the clock is faked.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import { isPageNavigation } from '../../src/browser/detect.ts'
import { FLOW_LIFETIME_MS, newNonce, openFlow, pkcePair, sealFlow } from '../../src/browser/flow.ts'
import { compile } from '../../src/compose.ts'
import { loadConfig } from '../../src/config/load.ts'
import { upstreamHeaders } from '../../src/http/headers.ts'

describe('isPageNavigation: only a browser loading a page is sent to sign in', () => {
  const nav = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }
  const cases: [string, string, Record<string, string>, boolean][] = [
    ['Chromium page load', 'GET', nav, true],
    ['old browser, Accept only', 'GET', { accept: 'text/html' }, true],
    ['Accept with parameters', 'GET', { accept: 'text/html;q=0.9' }, true],
    ['no Accept', 'GET', {}, false],
    ['Accept */* (fetch, XHR, curl)', 'GET', { accept: '*/*' }, false],
    ['Accept application/json', 'GET', { accept: 'application/json' }, false],
    ['text/htmlx is not text/html', 'GET', { accept: 'text/htmlx' }, false],
    ['fetch() asking for HTML', 'GET', { accept: 'text/html', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }, false],
    ['iframe', 'GET', { ...nav, 'sec-fetch-dest': 'iframe' }, false],
    ['jQuery XHR', 'GET', { accept: 'text/html, */*', 'x-requested-with': 'XMLHttpRequest' }, false],
    ['POST form', 'POST', nav, false],
    ['HEAD', 'HEAD', nav, false],
    ['OPTIONS', 'OPTIONS', nav, false],
  ]
  for (const [name, method, headers, want] of cases) {
    it(`${name} → ${want ? 'sign in' : 'JSON 401'}`, () => assert.equal(isPageNavigation({ method, headers }), want))
  }
})

describe('the flow cookie', () => {
  const pending = { kind: 'oidc' as const, rd: '/app?x=1', verifier: 'v'.repeat(43), nonce: newNonce(), redirectUri: 'https://gh.example/oauth2/callback', exp: 1_000_000 + FLOW_LIFETIME_MS }

  it('opens with its own state before expiry, and gives the pending data back', () => {
    const f = sealFlow(pending)
    const r = openFlow(f.cookie, f.state, 'state', 1_000_000)
    assert.ok(r.ok)
    assert.deepEqual(r.flow, pending)
  })

  it('keeps the pending data secret: the cookie shows neither the verifier, the nonce, the return path nor the state', () => {
    const f = sealFlow(pending)
    for (const s of [pending.verifier, pending.nonce, 'app', f.state, f.csrf]) assert.ok(!f.cookie.includes(s), s)
    assert.match(f.cookie, /^[A-Za-z0-9_.-]+$/, 'only cookie-safe characters')
  })

  it('refuses a wrong, missing or another flow’s state; a state is not a CSRF token and back', () => {
    const f = sealFlow(pending)
    const g = sealFlow(pending)
    assert.deepEqual(openFlow(f.cookie, g.state, 'state', 0), { ok: false, reason: 'state-mismatch' })
    assert.deepEqual(openFlow(f.cookie, undefined, 'state', 0), { ok: false, reason: 'state-mismatch' })
    assert.deepEqual(openFlow(f.cookie, '', 'state', 0), { ok: false, reason: 'state-mismatch' })
    assert.deepEqual(openFlow(f.cookie, f.csrf, 'state', 0), { ok: false, reason: 'state-mismatch' })
    assert.deepEqual(openFlow(f.cookie, f.state, 'csrf', 0), { ok: false, reason: 'state-mismatch' })
    assert.ok(openFlow(f.cookie, f.csrf, 'csrf', 0).ok)
    assert.deepEqual(openFlow(undefined, f.state, 'state', 0), { ok: false, reason: 'no-flow' })
  })

  it('refuses an altered cookie (every part) and an expired flow', () => {
    const f = sealFlow(pending)
    const parts = f.cookie.split('.')
    for (let i = 2; i < parts.length; i++) {
      const p = [...parts]
      const s = p[i] as string
      p[i] = `${s.slice(0, 3)}${s[3] === 'A' ? 'B' : 'A'}${s.slice(4)}`
      assert.equal(openFlow(p.join('.'), f.state, 'state', 0).ok, false, `part ${i}`)
    }
    assert.deepEqual(openFlow(f.cookie, f.state, 'state', pending.exp), { ok: false, reason: 'expired' })
    assert.deepEqual(openFlow('f1.x.y', f.state, 'state', 0), { ok: false, reason: 'malformed' })
  })

  it('PKCE S256: the challenge is BASE64URL(SHA-256(verifier)) of a 256-bit verifier (RFC 7636 §4.1–4.2)', () => {
    const p = pkcePair()
    assert.match(p.verifier, /^[A-Za-z0-9_-]{43}$/)
    assert.equal(p.challenge, createHash('sha256').update(p.verifier).digest('base64url'))
    assert.notEqual(pkcePair().verifier, p.verifier)
  })
})

describe('the Cookie filter: gatehouse’s cookies never reach the upstream', () => {
  const r = loadConfig({ env: { GATEHOUSE_UPSTREAM_URL: 'echo:' }, cwd: '/' })
  assert.ok(r.config !== undefined)
  const rt = compile(r.config)
  const forward = (raw: string[]): Record<string, string[]> => {
    const req = { rawHeaders: raw, headers: {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage
    const out = upstreamHeaders(req, rt.headers, { principal: undefined, requestId: 'r', proto: 'https' })
    const h: Record<string, string[]> = {}
    for (let i = 0; i < out.length; i += 2) (h[(out[i] as string).toLowerCase()] ??= []).push(out[i + 1] as string)
    return h
  }

  it('removes the session, flow and console cookies in any case and in every Cookie field; keeps the rest byte for byte', () => {
    const h = forward(['Cookie', 'a=1; __Host-gatehouse-session=abc;b="2"', 'cookie', '__HOST-GATEHOUSE-FLOW=x; c=3', 'COOKIE', ' __Host-gatehouse-console=y'])
    assert.deepEqual(h.cookie, ['a=1;b="2"; c=3'])
  })

  it('drops the header when only gatehouse’s cookies were sent, and leaves other headers alone', () => {
    const h = forward(['Cookie', '__Host-gatehouse-session=abc', 'X-Other', 'v'])
    assert.equal(h.cookie, undefined)
    assert.deepEqual(h['x-other'], ['v'])
  })
})
