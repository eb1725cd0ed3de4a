/**
 * Proof before measurement: an authenticating candidate must refuse every bad credential (401 or
 * 403) and accept the good one, forward it, and put the right identity in X-Forwarded-User even
 * when the client sent its own copy (the upstream's /whoami echoes that header). A pass-through
 * candidate must forward a plain request. A candidate that fails is reported, not measured.
 */
import { Agent, request } from 'undici'
import type { TestIssuer } from '../../test/helpers/issuer.ts'

/** A credential that must be refused. */
export interface BadCredential {
  label: string
  /** The Authorization header value; undefined sends none. */
  authorization: string | undefined
}

export interface ProofSpec {
  /** Base URL of the candidate (http or https). */
  url: string
  /** The Authorization header of a good request; undefined for pass-through candidates. */
  good: string | undefined
  bad: BadCredential[]
  /** The X-Forwarded-User the upstream must see for the good credential. */
  expectUser?: string | undefined
}

/** What the proof found. */
export interface ProofResult {
  ok: boolean
  /** One line per check. */
  lines: string[]
  /** The refused-credential labels, for the report. */
  refused: string[]
}

/**
 * A fresh connection for every check: some peers close the connection after a denial (HAProxy
 * over TLS does), and a reused socket would turn that into a client-side error.
 */
async function get(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false }, pipelining: 0 })
  try {
    const r = await request(url, { method: 'GET', headers, dispatcher, headersTimeout: 10_000, bodyTimeout: 10_000 })
    return { status: r.statusCode, body: await r.body.text() }
  } finally {
    await dispatcher.destroy()
  }
}

export async function prove(spec: ProofSpec): Promise<ProofResult> {
  const lines: string[] = []
  const refused: string[] = []
  let ok = true
  const fail = (s: string): void => {
    ok = false
    lines.push(`FAIL ${s}`)
  }
  for (const b of spec.bad) {
    try {
      const r = await get(`${spec.url}/bench`, b.authorization === undefined ? {} : { authorization: b.authorization })
      if (r.status === 401 || r.status === 403) {
        refused.push(b.label)
        lines.push(`ok   ${b.label}: ${r.status}`)
      } else fail(`${b.label}: got ${r.status}, expected 401/403`)
    } catch (e) {
      fail(`${b.label}: ${String(e)}`)
    }
  }
  const auth: Record<string, string> = spec.good === undefined ? {} : { authorization: spec.good }
  try {
    const r = await get(`${spec.url}/bench`, auth)
    if (r.status === 200 && r.body === 'ok') lines.push(`ok   good request: 200`)
    else fail(`good request: got ${r.status} ${JSON.stringify(r.body.slice(0, 200))}`)
    if (spec.expectUser !== undefined) {
      const w = await get(`${spec.url}/whoami`, { ...auth, 'x-forwarded-user': 'spoofed-by-client' })
      if (w.status === 200 && w.body === `user=${spec.expectUser}`) lines.push(`ok   upstream saw X-Forwarded-User: ${spec.expectUser} (client's copy replaced)`)
      else fail(`identity: upstream saw ${JSON.stringify(w.body.slice(0, 200))} (${w.status}), expected user=${spec.expectUser}`)
    }
  } catch (e) {
    fail(`good request: ${String(e)}`)
  }
  return { ok, lines, refused }
}

/**
 * The bad tokens a suite's proof sends (a subset of bench/peers.ts's ten: the proof, not the
 * attack suite): none, a corrupted signature, `alg: none`, expired, a wrong audience.
 */
export async function proofBadTokens(issuer: TestIssuer, good: string, subject: string): Promise<BadCredential[]> {
  const now = Math.floor(Date.now() / 1000)
  return [
    { label: 'no credential', authorization: undefined },
    { label: 'corrupted signature', authorization: `Bearer ${issuer.attacks.corruptSignature(good)}` },
    { label: 'alg none', authorization: `Bearer ${issuer.attacks.unsignedAlgNone({ sub: subject })}` },
    { label: 'expired', authorization: `Bearer ${await issuer.sign({ sub: subject, iat: now - 7200, exp: now - 3600 })}` },
    { label: 'wrong aud', authorization: `Bearer ${await issuer.sign({ sub: subject, aud: 'someone-else' })}` },
  ]
}
