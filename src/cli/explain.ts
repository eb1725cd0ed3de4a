/**
 * `gatehouse explain`: run stages 2–7 of the pipeline for a described request, without an
 * upstream call, and print what each decided.
 */
import { readFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { extractCredential } from '../auth/extract.ts'
import { jwtShape } from '../auth/jwtShape.ts'
import { createOidc } from '../auth/oidc/setup.ts'
import { compile } from '../compose.ts'
import { createLogger } from '../log.ts'
import { GatehouseError } from '../errors.ts'
import { upstreamHeaders } from '../http/headers.ts'
import { asGatehouseError } from '../http/respond.ts'
import { parseTarget } from '../http/target.ts'
import { loadOrReport, UsageError } from './io.ts'

/** Explain one request; exit 0 when explained (allowed or not), 2 on bad input. */
export async function explain(v: Record<string, string | boolean | string[] | undefined>): Promise<number> {
  const method = typeof v.method === 'string' ? v.method : undefined
  const p = typeof v.path === 'string' ? v.path : undefined
  if (method === undefined || p === undefined) throw new UsageError('--method and --path are required')
  const given = [v.token !== undefined, v['token-file'] !== undefined, v.anonymous === true].filter(Boolean).length
  if (given > 1) throw new UsageError('give only one of --token, --token-file, --anonymous')
  let token = typeof v.token === 'string' ? v.token : undefined
  if (typeof v['token-file'] === 'string') token = readFileSync(v['token-file'] === '-' ? 0 : v['token-file'], 'utf8').trim()
  const r = loadOrReport(typeof v.config === 'string' ? v.config : undefined)
  if (!r.ok || r.config === undefined) return 2
  // Verifying a JWT needs the issuer's keys: fetch them once (persisted keys are used if it is down).
  const oidc = await createOidc(r.config, createLogger('silent'))
  oidc.start()
  if (token !== undefined && jwtShape(token) !== undefined) await oidc.settle()
  const rt = compile(r.config, oidc.verifiers)

  const headers: Record<string, string> = {}
  const rawHeaders: string[] = []
  for (const h of (v.header as string[] | undefined) ?? []) {
    const i = h.indexOf(':')
    if (i <= 0) throw new UsageError(`--header must look like "Name: value", got ${JSON.stringify(h)}`)
    const name = h.slice(0, i).trim()
    headers[name.toLowerCase()] = h.slice(i + 1).trim()
    rawHeaders.push(name, h.slice(i + 1).trim())
  }
  if (token !== undefined) {
    headers.authorization = `Bearer ${token}`
    rawHeaders.push('Authorization', `Bearer ${token}`)
  }
  headers.host ??= 'localhost'
  const req = { method: method.toUpperCase() === method ? method : method, url: p, headers, rawHeaders, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage

  const out: Record<string, unknown> = { method, path: p }
  const lines: [string, string][] = [['request', `${method} ${p}`]]
  try {
    const target = parseTarget(p)
    out.normalizedPath = target.path
    lines.push(['normalized path', target.path])
    const { credential, query } = extractCredential(req, target.query, rt.extract)
    const shape = credential === undefined ? undefined : jwtShape(credential.token)
    out.credential = credential === undefined ? 'none' : `${shape === undefined ? 'API key' : 'JWT'} from ${credential.source}`
    lines.push(['credential', String(out.credential)])
    const cls = rt.profile.classify(method, target.path)
    out.rule = cls.rule
    out.access = cls.access
    lines.push(['profile rule', `${cls.rule} (needs: ${cls.access})`])
    const authn = await rt.authenticator.authenticate(credential, cls.access)
    out.authenticator = authn.authenticator
    out.principal = authn.principal
    lines.push(['authenticator', authn.authenticator])
    lines.push(['principal', `user=${authn.principal.user} groups=[${authn.principal.groups.join(',')}] method=${authn.principal.method}`])
    const d = rt.adminList.decide(authn.principal, cls.access)
    out.decision = d.allowed ? 'allow' : 'deny'
    out.decisionRule = d.rule
    if (!d.allowed) throw new GatehouseError('ERR_FORBIDDEN', { detail: d.rule })
    lines.push(['decision', `allow — ${d.rule}`])
    const up = upstreamHeaders(req, rt.headers, { principal: authn.principal, requestId: '(generated)', proto: rt.proto })
    const injected: string[] = []
    for (let i = 0; i < up.length; i += 2) if (!(up[i] as string).toLowerCase().startsWith('authorization')) injected.push(`${up[i]}: ${up[i + 1]}`)
    out.upstreamRequest = { path: target.path, query, headers: injected }
    lines.push(['forwarded as', `${method} ${target.path}${query === '' ? '' : '?…'} to ${r.config.upstream.url}`])
    lines.push(['headers sent', injected.join('\n' + ' '.repeat(17))])
  } catch (e) {
    const err = asGatehouseError(e)
    out.decision = 'deny'
    out.status = err.status
    out.reason = err.code
    out.message = err.message
    lines.push(['decision', `deny — ${err.status} ${err.code}: ${err.message}${err.detail === undefined ? '' : ` (${err.detail})`}`])
  }
  oidc.stop()
  if (v.json === true) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  else for (const [k, val] of lines) process.stdout.write(`${`${k}:`.padEnd(16)} ${val}\n`)
  return 0
}
