/**
 * `gatehouse store migrate`: copy a single replica's file store into a shared Redis/Valkey store
 * (src/store/migrate.ts does the work; docs/replicas.md, "Moving from one replica to several").
 *
 * The target's connection settings are the `store.*` settings a replica uses — from the
 * configuration file, the GATEHOUSE_STORE_* variables, or these flags over both — and are
 * validated by the same rules (no password in the URL, a CA only with rediss://, …). The
 * password is never a flag (process lists show flags): GATEHOUSE_STORE_PASSWORD or
 * --password-file.
 */
import path from 'node:path'
import { formatProblem, loadConfig } from '../config/load.ts'
import { inspectTarget, isEmptyTarget, MigrationError, openTarget, readFileState, writePlan, type MigrationPlan, type TargetContents } from '../store/migrate.ts'
import { UsageError } from './usage.ts'

type Values = Record<string, string | boolean | string[] | undefined>

/** Flag → the variable of the same `store.*` key (the flag wins over the variable and the file). */
const FLAG_ENV: readonly (readonly [string, string])[] = [
  ['to', 'GATEHOUSE_STORE_URL'],
  ['ca-file', 'GATEHOUSE_STORE_CA_FILE'],
  ['username', 'GATEHOUSE_STORE_USERNAME'],
  ['password-file', 'GATEHOUSE_STORE_PASSWORD_FILE'],
  ['key-prefix', 'GATEHOUSE_STORE_KEY_PREFIX'],
]

/** `gatehouse store migrate`; the exit code. */
export async function storeMigrate(v: Values): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const [flag, name] of FLAG_ENV) {
    const val = v[flag]
    if (typeof val === 'string') env[name] = val
  }
  // A password file given on the command line replaces a password from the environment.
  if (typeof v['password-file'] === 'string') delete env.GATEHOUSE_STORE_PASSWORD
  const from = typeof v.from === 'string' ? v.from : undefined
  if (from !== undefined && !from.startsWith('file:')) throw new UsageError(`--from must be file:DIR (the stateDir of the single replica), not ${JSON.stringify(from)}`)

  const r = loadConfig({ configPath: v.config as string | undefined, env })
  if (r.config === undefined) {
    process.stderr.write(`gatehouse store migrate: the configuration has ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}:\n`)
    for (const p of r.problems) process.stderr.write(`  ${formatProblem(p)}\n`)
    process.stderr.write('Fix them (the store.* keys, GATEHOUSE_STORE_* or the flags) and run the migration again.\n')
    return 2
  }
  const c = r.config
  if (c.store.url === 'file:') throw new UsageError('name the shared store to copy into with --to redis://HOST:PORT or rediss://HOST:PORT (or store.url / GATEHOUSE_STORE_URL)')
  const dir = path.resolve(from === undefined || from === 'file:' ? c.stateDir : from.slice('file:'.length))
  const l = c.authentication.local
  const now = Date.now()

  // 1. Read and validate everything before touching the target.
  const plan = await readFileState(dir, { now, familyTtlMs: l.refreshTokenLifetime + l.accessTokenLifetime })
  // 2. Look at the target.
  const target = await openTarget({
    url: c.store.url,
    username: c.store.username,
    password: c.store.password,
    passwordFile: c.store.passwordFile,
    caFile: c.store.caFile,
    keyPrefix: c.store.keyPrefix,
    connectTimeoutMs: c.store.connectTimeout,
    commandTimeoutMs: c.store.commandTimeout,
  })
  try {
    const before = await inspectTarget(target)
    const json = v.json === true
    const out = { source: `file:${dir}`, target: c.store.url, keyPrefix: c.store.keyPrefix, plan, before }
    if (!json) process.stdout.write(summary(out))
    if (v['dry-run'] === true) {
      if (json) process.stdout.write(`${JSON.stringify(report(out, { dryRun: true, written: false, keys: undefined }), null, 2)}\n`)
      else process.stdout.write(`Dry run: nothing was written.${isEmptyTarget(before) ? ' Run again without --dry-run to copy.' : ' The target is not empty: a real run needs --force (stop its replicas first).'}\n`)
      return 0
    }
    if (!isEmptyTarget(before) && v.force !== true) {
      throw new MigrationError(`the target ${c.store.url} already holds ${describe(before)} under ${c.store.keyPrefix}; nothing was written. Use --force to replace it (stop its replicas first), or another --key-prefix`)
    }
    // 3. One transaction.
    const keys = await writePlan(target, plan, { replace: v.force === true, now })
    if (json) process.stdout.write(`${JSON.stringify(report(out, { dryRun: false, written: true, keys }), null, 2)}\n`)
    else {
      process.stdout.write(
        `Copied into ${c.store.url} (${keys} keys under ${c.store.keyPrefix}${isEmptyTarget(before) ? '' : `, replacing ${describe(before)}`}).\n` +
          `Next: start the replicas with store.url ${c.store.url}${c.store.keyPrefix === 'gatehouse:' ? '' : ` and keyPrefix ${c.store.keyPrefix}`}; restart any replica that was already running on it (it loaded the signing key at start). Keep the file store until they serve (docs/replicas.md).\n`,
      )
    }
    return 0
  } finally {
    await target.close()
  }
}

interface Out {
  readonly source: string
  readonly target: string
  readonly keyPrefix: string
  readonly plan: MigrationPlan
  readonly before: TargetContents
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`

/** What the target holds, in words (counts and setting names only). */
function describe(t: TargetContents): string {
  const parts: string[] = []
  if (t.users > 0) parts.push(plural(t.users, 'user'))
  if (t.refreshTokens > 0) parts.push(plural(t.refreshTokens, 'refresh token'))
  if (t.sessions > 0) parts.push(plural(t.sessions, 'session'))
  if (t.locks > 0) parts.push(plural(t.locks, 'lockout counter'))
  if (t.settings.length > 0) parts.push(`settings (${t.settings.join(', ')})`)
  if (t.signingKey) parts.push('a signing key')
  if (t.other > 0) parts.push(plural(t.other, 'other key'))
  return `${parts.length === 0 ? plural(t.keys, 'key') : parts.join(', ')}`
}

/** The human summary: what will be (or was) copied, what is left behind, and the target. Never a value of a secret. */
function summary(o: Out): string {
  const p = o.plan
  const names = p.users.map((u) => u.username)
  const shown = names.length > 20 ? `${names.slice(0, 20).join(', ')}, …` : names.join(', ')
  const left = (n: number, why: string): string => (n > 0 ? ` (${n} ${why}, left behind)` : '')
  const rows: [string, string][] = [
    ['users', `${p.users.length}${names.length > 0 ? ` (${shown})` : ''}`],
    ['refresh tokens', `${p.refresh.length}${left(p.skipped.refresh, 'expired')}`],
    ['revoked families', `${p.revokedFamilies.length}${left(p.skipped.revokedFamilies, 'past their memory')}`],
    ['lockout counters', `${p.locks.length}${p.locks.some(([, s]) => s.lockedUntil > 0) ? ` (${p.locks.filter(([, s]) => s.lockedUntil > 0).length} locked)` : ''}${left(p.skipped.locks, 'run out')}`],
    ['sessions', `${p.sessions.length}${left(p.skipped.sessions, 'ended')}`],
    ['settings', p.settings.length === 0 ? 'none' : p.settings.map(([k]) => k).sort().join(', ')],
    ['signing key', p.signingKey === undefined ? 'none (the replicas create one; there are no local tokens to keep)' : `kid ${p.signingKey.kid} (tokens issued before keep working)`],
  ]
  return (
    `From ${o.source}:\n${rows.map(([k, val]) => `  ${k.padEnd(17)} ${val}\n`).join('')}` +
    `To ${o.target} (key prefix ${o.keyPrefix}): ${isEmptyTarget(o.before) ? 'empty' : `holds ${describe(o.before)}`}\n`
  )
}

/** The --json form (names and counts; no hash, token, key or password). */
function report(o: Out, r: { dryRun: boolean; written: boolean; keys: number | undefined }): Record<string, unknown> {
  const p = o.plan
  return {
    source: o.source,
    target: o.target,
    keyPrefix: o.keyPrefix,
    dryRun: r.dryRun,
    written: r.written,
    ...(r.keys === undefined ? {} : { keys: r.keys }),
    copy: {
      users: p.users.map((u) => u.username),
      refreshTokens: p.refresh.length,
      revokedFamilies: p.revokedFamilies.length,
      lockoutCounters: p.locks.length,
      sessions: p.sessions.length,
      settings: p.settings.map(([k]) => k).sort(),
      signingKey: p.signingKey === undefined ? null : { iss: p.signingKey.iss, kid: p.signingKey.kid },
    },
    leftBehind: p.skipped,
    targetBefore: { empty: isEmptyTarget(o.before), ...o.before },
  }
}
