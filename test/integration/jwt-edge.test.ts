/**
 * JWT edge cases against the real test issuer, a real gatehouse and a recording upstream: a
 * blank user name, `azp` with several audiences (OIDC Core §3.1.3.7), a JWKS that is empty or
 * has no usable key, keys whose `use`/`key_ops` forbid verification, a JWKS that leaks private
 * members, and attacker-chosen header values (a 10 KiB `kid` with control characters) in logs.
 * Every refused token is checked for its status, its reason and the upstream having seen nothing.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { oidcEnv, startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { assertNoSecretsInLogs, startProxy, waitReady, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const COOLDOWN_MS = 200
// A short refetch cooldown, so that a changed JWKS is picked up by the next unknown kid.
const YAML = `tls:\n  enabled: false\nauthentication:\n  oidc:\n    jwks:\n      cooldown: ${COOLDOWN_MS}ms\n      fetchTimeout: 1s\n`

/** Expect a refusal: status, reason, and nothing at the upstream. */
async function refused(gh: TestProxy, up: RecordingUpstream, token: string, status: number, reason: string): Promise<void> {
  up.reset()
  const r = await gh.request('/v1/objects', { token })
  assert.equal(r.status, status, r.text)
  assert.equal(r.json().reason, reason)
  assert.equal(up.requests.length, 0, 'the upstream saw nothing')
}

async function accepted(gh: TestProxy, up: RecordingUpstream, token: string, user: string): Promise<void> {
  up.reset()
  const r = await gh.request('/v1/objects', { token })
  assert.equal(r.status, 200, r.text)
  assert.equal(up.requests.length, 1)
  assert.equal(up.requests[0]?.headers['x-forwarded-user'], user)
}

describe('JWT claims: blank user name, azp with several audiences', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let gh: TestProxy
  let skip: TestProxy

  before(async () => {
    issuer = await startIssuer({ audience: 'gatehouse' })
    up = await startUpstream()
    gh = await startProxy({ env: oidcEnv(issuer, up), yaml: YAML })
    skip = await startProxy({ env: oidcEnv(issuer, up, { AUTHENTICATION_OIDC_SKIP_CLIENT_ID_CHECK: 'true' }), yaml: YAML })
    await waitReady(gh)
    await waitReady(skip)
  })
  after(async () => {
    await gh.stop()
    await skip.stop()
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs([...gh.logs, ...skip.logs])
  })

  for (const [name, email] of [
    ['empty', ''],
    ['spaces', '   '],
    ['a tab and a newline', '\t\n'],
    ['a no-break space', '\u00a0'],
  ] as const) {
    it(`a user name claim of ${name} is 401 ERR_MISSING_CLAIM`, async () => {
      await refused(gh, up, await issuer.sign({ email }), 401, 'ERR_MISSING_CLAIM')
    })
  }

  it('several audiences and an azp that is another client: 401', async () => {
    await refused(gh, up, await issuer.sign({ email: 'a@example.com', aud: ['gatehouse', 'other-app'], azp: 'other-app' }), 401, 'ERR_INVALID_TOKEN')
    const r = await gh.request('/v1/objects', { token: await issuer.sign({ email: 'a@example.com', aud: ['other-app', 'gatehouse'], azp: 'other-app' }) })
    assert.match(r.json().message, /another client/)
  })

  it('several audiences with azp = the client id, or without azp: accepted', async () => {
    await accepted(gh, up, await issuer.sign({ email: 'b@example.com', aud: ['gatehouse', 'other-app'], azp: 'gatehouse' }), 'b@example.com')
    await accepted(gh, up, await issuer.sign({ email: 'b2@example.com', aud: ['gatehouse', 'other-app'] }), 'b2@example.com')
  })

  it('one audience with another azp: accepted (the rule is for several audiences)', async () => {
    await accepted(gh, up, await issuer.sign({ email: 'c@example.com', aud: 'gatehouse', azp: 'other-app' }), 'c@example.com')
    await accepted(gh, up, await issuer.sign({ email: 'c2@example.com', aud: ['gatehouse'], azp: 'other-app' }), 'c2@example.com')
  })

  it('skipClientIdCheck keeps skipping (aud and azp)', async () => {
    await accepted(skip, up, await issuer.sign({ email: 'd@example.com', aud: ['x-app', 'y-app'], azp: 'y-app' }), 'd@example.com')
  })
})

describe('JWKS documents: empty or unusable, use/key_ops, private members', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let gh: TestProxy
  let signer: string
  let second: string

  before(async () => {
    issuer = await startIssuer({ audience: 'gatehouse' })
    signer = issuer.keys.signingKid
    second = await issuer.keys.addKey('RS256')
    up = await startUpstream()
    gh = await startProxy({ env: oidcEnv(issuer, up), yaml: YAML })
    await waitReady(gh)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    await issuer.close()
    assertNoSecretsInLogs(gh.logs)
  })

  /** Serve `doc` and make gatehouse refetch (an unknown kid after the cooldown). */
  async function serve(doc: unknown): Promise<void> {
    issuer.jwksOverride = doc
    await sleep(COOLDOWN_MS + 50)
    const before = issuer.hits.jwks
    await gh.request('/v1/objects', { token: await issuer.attacks.signWithUnpublishedKey({ email: 'probe@example.com' }) })
    assert.ok(issuer.hits.jwks > before, 'gatehouse refetched the JWKS')
  }

  const pub = (kid: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ ...issuer.keys.publicJwk(kid), ...extra })

  it('an empty JWKS does not evict keys that still verify; the bad document is logged', async () => {
    await accepted(gh, up, await issuer.sign({ email: 'e1@example.com' }), 'e1@example.com')
    await serve({ keys: [] })
    await accepted(gh, up, await issuer.sign({ email: 'e2@example.com' }), 'e2@example.com')
    assert.equal((await gh.admin('/readyz')).status, 200, 'still ready')
    const bad = gh.logs.filter((l) => l.includes('without a usable signing key'))
    assert.ok(bad.length >= 1)
    assert.match(bad[0] as string, /"document":"no keys"/)
  })

  it('a JWKS with only unusable keys (encryption use, key_ops without verify, not importable) does not evict either', async () => {
    await serve({ keys: [pub(signer, { use: 'enc' }), pub(second, { use: undefined, key_ops: ['encrypt'] }), { kty: 'EC', kid: 'broken', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] })
    await accepted(gh, up, await issuer.sign({ email: 'e3@example.com' }), 'e3@example.com')
    const line = gh.logs.filter((l) => l.includes('without a usable signing key')).at(-1) as string
    assert.match(line, /use is not sig/)
    assert.match(line, /key_ops lack verify/)
    assert.match(line, /not importable/)
    assert.doesNotMatch(line, new RegExp(String(issuer.keys.publicJwk(signer).n).slice(0, 40)), 'no key material in the summary')
  })

  it('keys whose use is not sig, or whose key_ops lack verify, are not used', async () => {
    // A usable set (second key fine), in which the signer's key may only encrypt.
    await serve({ keys: [pub(signer, { use: 'enc' }), pub(second)] })
    await refused(gh, up, await issuer.sign({ email: 'f1@example.com' }, { kid: signer }), 401, 'ERR_INVALID_TOKEN')
    await accepted(gh, up, await issuer.sign({ email: 'f2@example.com' }, { kid: second }), 'f2@example.com')
    await serve({ keys: [pub(signer, { use: undefined, key_ops: ['sign'] }), pub(second)] })
    await refused(gh, up, await issuer.sign({ email: 'f3@example.com' }, { kid: signer }), 401, 'ERR_INVALID_TOKEN')
    await serve({ keys: [pub(signer, { use: undefined, key_ops: ['verify'] }), pub(second)] })
    await accepted(gh, up, await issuer.sign({ email: 'f4@example.com' }, { kid: signer }), 'f4@example.com')
  })

  it('a JWKS with private members is used with them dropped, and warned about once per issuer', async () => {
    const priv = issuer.keys.privateJwk(signer)
    assert.ok(typeof priv.d === 'string' && typeof priv.p === 'string')
    const secretK = 'bGVha2VkLWhtYWMta2V5LXZhbHVlLTEyMzQ1Ng'
    await serve({ keys: [priv, pub(second), { kty: 'oct', kid: 'leaked-hmac', k: secretK }] })
    await accepted(gh, up, await issuer.sign({ email: 'g1@example.com' }, { kid: signer }), 'g1@example.com')
    await serve({ keys: [priv, pub(second)] })
    await accepted(gh, up, await issuer.sign({ email: 'g2@example.com' }, { kid: signer }), 'g2@example.com')
    const warnings = gh.logs.filter((l) => l.includes('publishes private key members'))
    assert.equal(warnings.length, 1, 'once per issuer')
    assert.match(warnings[0] as string, /"members":\["d","p","q","dp","dq","qi","k"\]/)
    const secrets = [priv.d, priv.p, priv.q, priv.dp, priv.dq, priv.qi, secretK] as string[]
    assertNoSecretsInLogs(gh.logs, secrets)
    // Nor are they kept on disk (the persisted last good JWKS).
    const dir = path.join(gh.dir, 'state', 'oidc')
    for (const f of readdirSync(dir)) {
      const text = readFileSync(path.join(dir, f), 'utf8')
      for (const s of secrets) assert.ok(!text.includes(s), 'no private member persisted')
    }
  })
})

describe('attacker-chosen token header values are logged bounded and escaped', () => {
  let issuer: TestIssuer
  let up: RecordingUpstream
  let gh: TestProxy

  before(async () => {
    issuer = await startIssuer({ audience: 'gatehouse' })
    up = await startUpstream()
    gh = await startProxy({
      env: oidcEnv(issuer, up),
      yaml: `${YAML}    maxTokenBytes: 64KiB\nlimits:\n  maxHeaderBytes: 64KiB\n`,
    })
    await waitReady(gh)
  })
  after(async () => {
    await gh.stop()
    await up.close()
    await issuer.close()
  })

  const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/ // eslint-disable-line no-control-regex

  /** The access line of the last refused request, parsed. */
  function lastRefusal(): { detail: string; line: string } {
    const line = gh.logs.filter((l) => l.includes('"reason":"ERR_INVALID_TOKEN"')).at(-1)
    assert.ok(line !== undefined, 'an access line for the refusal')
    return { detail: (JSON.parse(line) as { detail: string }).detail, line }
  }

  it('a 10 KiB kid with control characters: 401, nothing upstream, the log holds 64 escaped characters of it', async () => {
    // Control characters up front (where the log keeps them) and along the way; 10 KiB in all,
    // within gatehouse's 16 KiB bound on a presented token.
    const unit = 'kid\u0000\u001b[31mred\r\nforged-line\u2028\u202e'
    const kid = (unit + `${'k'.repeat(999)}\u0007`.repeat(11)).slice(0, 10 * 1024)
    const token = await issuer.sign({ email: 'h@example.com' }, { header: { kid } })
    await refused(gh, up, token, 401, 'ERR_INVALID_TOKEN')
    const { detail, line } = lastRefusal()
    assert.ok(line.length < 1024, `the access line stays short (${line.length})`)
    assert.ok(!CONTROLS.test(detail), 'no raw control character in the logged detail')
    assert.match(detail, /\\u0000\\u001b\[31mred\\r\\nforged-line\\u2028\\u202e/, 'escaped, readable')
    assert.match(detail, new RegExp(`…\\(\\+${kid.length - 64} chars\\)`), 'truncated to 64 characters, with the count')
    for (const l of gh.logs) assert.ok(l.length < 4096, 'no log line carries the whole kid')
  })

  it('other header values too: a 5 KiB alg with control characters', async () => {
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
    const alg = `RS256\u001b]0;pwned\u0007${'A'.repeat(5000)}`
    const token = `${b64({ alg, kid: issuer.keys.signingKid })}.${b64({ iss: issuer.url, aud: 'gatehouse', email: 'i@example.com', exp: Math.floor(Date.now() / 1000) + 60 })}.c2ln`
    await refused(gh, up, token, 401, 'ERR_INVALID_TOKEN')
    const { detail, line } = lastRefusal()
    assert.ok(line.length < 1024)
    assert.ok(!CONTROLS.test(detail))
    assert.match(detail, /RS256\\u001b\]0;pwned\\u0007A/)
  })
})
