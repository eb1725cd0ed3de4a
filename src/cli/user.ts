/**
 * `gatehouse user …`: Weka-style login and local-user administration against the admin API
 * (docs/api.md). Prompts go to stderr; passwords are read without echo when stdin is a
 * terminal, and line by line, in order, when it is not (so scripts and tests can pipe them).
 */
import { createInterface, type Interface } from 'node:readline'
import { parseDuration } from '../config/units.ts'
import { AdminError, COMMON_HELP, COMMON_OPTIONS, registerSecret, str, tokenUser, withClient, type AdminClient, type AdminCommand, UsageError, type LoginAnswer, type Values } from './adminClient.ts'

const ROLES = ['admin', 'readonly', 'regular'] as const

// ---------------------------------------------------------------------------------------------
// Prompts.

/** Reads answers from the terminal (no echo for secrets) or, without one, line by line from stdin. */
export class Prompter {
  private rl: Interface | undefined
  private readonly lines: string[] = []
  private readonly waiters: ((line: string | undefined) => void)[] = []
  private ended = false
  readonly interactive: boolean

  constructor(interactive: boolean = process.stdin.isTTY === true) {
    this.interactive = interactive
  }

  /**
   * An answer that may be shown while typed (a user name). `how` names the argument or flag
   * that gives it instead, for the message when stdin is not a terminal and has run dry.
   */
  async ask(prompt: string, what: string, how: string): Promise<string> {
    if (!this.interactive) return (await this.line(what, how)).trim()
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true })
    try {
      return await new Promise<string>((resolve, reject) => {
        rl.once('close', () => reject(new UsageError(`no ${what} given`)))
        rl.question(prompt, (a) => resolve(a.trim()))
      })
    } finally {
      rl.close()
    }
  }

  /** A secret: no echo on a terminal. */
  async secret(prompt: string, what: string, how: string): Promise<string> {
    const s = this.interactive ? await readHidden(prompt, what) : await this.line(what, how)
    registerSecret(s)
    return s
  }

  /** A new password, asked twice (also from a pipe: the password line, then the confirmation line). */
  async newPassword(prompt: string, what: string, how: string): Promise<string> {
    const a = await this.secret(prompt, what, how)
    const b = await this.secret('Confirm the new password: ', `${what} confirmation`, how)
    if (a !== b) throw new AdminError('the passwords do not match; nothing was changed')
    return a
  }

  /** Stop reading stdin. */
  close(): void {
    this.rl?.close()
    this.rl = undefined
  }

  private async line(what: string, how: string): Promise<string> {
    if (this.rl === undefined && !this.ended) {
      this.rl = createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity })
      this.rl.on('line', (l) => {
        const w = this.waiters.shift()
        if (w !== undefined) w(l)
        else this.lines.push(l)
      })
      this.rl.on('close', () => {
        this.ended = true
        for (const w of this.waiters.splice(0)) w(undefined)
      })
    }
    const queued = this.lines.shift()
    const l = queued ?? (this.ended ? undefined : await new Promise<string | undefined>((r) => this.waiters.push(r)))
    if (l === undefined) throw new UsageError(`no ${what} given: stdin is not a terminal and has no more lines; ${how}`)
    return l
  }
}

/** Read a line from the terminal without echoing it. */
function readHidden(prompt: string, what: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(prompt)
  return new Promise<string>((resolve, reject) => {
    let buf = ''
    const done = (err?: Error): void => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      process.stderr.write('\n')
      if (err === undefined) resolve(buf)
      else reject(err)
    }
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done()
        if (ch === '\u0003') return done(new UsageError('interrupted'))
        if (ch === '\u0004') return buf === '' ? done(new UsageError(`no ${what} given`)) : done()
        if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1)
        else if (ch >= ' ') buf += ch
      }
    }
    stdin.setRawMode(true)
    stdin.setEncoding('utf8')
    stdin.on('data', onData)
    stdin.resume()
  })
}

// ---------------------------------------------------------------------------------------------
// Shapes of the answers (docs/api.md).

interface Whoami {
  username: string
  role: string
  source?: string
  uid?: string | number
  org_id?: number
  org_name?: string
}

interface UserRow {
  username: string
  role: string
  uid?: string | number
  /** local, or ldap for a directory user (docs/directory.md). */
  source?: string
  password_change_required?: boolean
  locked?: boolean
}

function out(text: string): void {
  process.stdout.write(`${text}\n`)
}

function note(text: string): void {
  process.stderr.write(`${text}\n`)
}

/** Too many positionals: say so without echoing them (one may be a password). */
function positionalCount(pos: string[], max: number, names: string): void {
  if (pos.length > max) throw new UsageError(max === 0 ? 'this command takes no arguments' : `too many arguments (expected ${names})`)
}

async function runWithPrompter<T>(v: Values, fn: (c: AdminClient, p: Prompter) => Promise<T>): Promise<T> {
  const p = new Prompter()
  try {
    return await withClient(v, (c) => fn(c, p))
  } finally {
    p.close()
  }
}

/** Print the login banner when it is enabled; an admin API without one is not an error. */
async function printBanner(c: AdminClient): Promise<void> {
  let b: { text?: unknown; enabled?: unknown } | undefined
  try {
    b = (await c.call('GET', '/api/v2/security/banner', { auth: 'none' })) as typeof b
  } catch (e) {
    if (e instanceof AdminError && e.status !== undefined) return
    throw e
  }
  if (b?.enabled === true && typeof b.text === 'string' && b.text !== '') out(`${b.text}\n`)
}

// ---------------------------------------------------------------------------------------------
// Commands.

async function login(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 2, 'USERNAME and PASSWORD')
  if (pos[1] !== undefined) registerSecret(pos[1])
  const org = str(v.org)
  return runWithPrompter(v, async (c, p) => {
    await printBanner(c)
    const username = pos[0] ?? (await p.ask('Username: ', 'user name', 'pass it as USERNAME (gatehouse user login USERNAME), or pipe one line per answer'))
    if (username === '') throw new UsageError('the user name is empty')
    const password = pos[1] ?? (await p.secret('Password: ', 'password', 'pass it as PASSWORD (gatehouse user login USERNAME PASSWORD), or pipe it as a line'))
    let a: LoginAnswer = await c.login(username, password, org)
    if (a.password_change_required === true) {
      note(`The password of ${username} must be changed before it can be used.`)
      const np = await p.newPassword('New password: ', 'new password', 'this account must change its password first: pipe the new password twice after the current one (one line each), or log in on a terminal')
      await c.call('PUT', '/api/v2/users/password', { body: { old_password: password, new_password: np }, auth: { bearer: a.access_token } })
      out(`password changed for ${username}`)
      a = await c.login(username, np, org)
      if (a.password_change_required === true) throw new AdminError('the server still requires a password change after it accepted the new password')
    }
    c.saveTokens(a)
    out(`logged in as ${username}`)
    return 0
  })
}

async function whoami(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 0, 'no arguments')
  return withClient(v, async (c) => {
    const w = (await c.call('GET', '/api/v2/users/whoami')) as Whoami
    if (v.json === true) out(JSON.stringify(w, null, 2))
    else out(`${w.username} (role ${w.role}${w.source === undefined ? '' : `, ${w.source} user`}${w.uid === undefined ? '' : `, uid ${w.uid}`}${w.org_name === undefined ? '' : `, organization ${w.org_name}`})`)
    return 0
  })
}

async function add(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 1, 'USERNAME')
  const username = pos[0]
  if (username === undefined) throw new UsageError('USERNAME is required')
  const role = str(v.role)
  if (role === undefined) throw new UsageError(`--role is required (${ROLES.join(', ')})`)
  if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`)
  registerSecret(str(v.password))
  return runWithPrompter(v, async (c, p) => {
    c.loadTokens() // "not logged in" before asking for a password
    const password = str(v.password) ?? (await p.newPassword(`Password for ${username}: `, 'password', 'pass --password P, or pipe the password twice (one line each)'))
    const r = (await c.call('POST', '/api/v2/users', { body: { username, password, role } })) as Partial<UserRow> | undefined
    if (v.json === true) out(JSON.stringify(r, null, 2))
    else out(`added user ${r?.username ?? username} (role ${r?.role ?? role})`)
    return 0
  })
}

async function list(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 0, 'no arguments')
  return withClient(v, async (c) => {
    const rows = (await c.call('GET', '/api/v2/users')) as UserRow[]
    if (v.json === true) {
      out(JSON.stringify(rows, null, 2))
      return 0
    }
    const table = [['USERNAME', 'ROLE', 'UID', 'MUST CHANGE PASSWORD', 'LOCKED', 'SOURCE']]
    for (const r of rows) table.push([r.username, r.role, String(r.uid ?? ''), r.password_change_required === true ? 'yes' : 'no', r.locked === true ? 'yes' : 'no', r.source ?? 'local'])
    const widths = table[0]?.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length))) ?? []
    for (const row of table) out(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '))
    return 0
  })
}

async function del(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 1, 'USERNAME')
  const username = pos[0]
  if (username === undefined) throw new UsageError('USERNAME is required')
  return withClient(v, async (c) => {
    await c.call('DELETE', `/api/v2/users/${encodeURIComponent(username)}`)
    out(`deleted user ${username}`)
    return 0
  })
}

async function update(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 1, 'USERNAME')
  const username = pos[0]
  if (username === undefined) throw new UsageError('USERNAME is required')
  const role = str(v.role)
  if (role === undefined) throw new UsageError(`--role is required (${ROLES.join(', ')})`)
  if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`)
  return withClient(v, async (c) => {
    await c.call('PUT', `/api/v2/users/${encodeURIComponent(username)}`, { body: { role } })
    out(`user ${username} now has role ${role}; their earlier tokens and sessions have ended`)
    return 0
  })
}

async function passwd(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 1, 'NEW_PASSWORD')
  if (pos[0] !== undefined) registerSecret(pos[0])
  const target = str(v.username)
  let current = str(v['current-password'])
  registerSecret(current)
  return runWithPrompter(v, async (c, p) => {
    const t = c.loadTokens()
    let me: string | undefined
    try {
      me = ((await c.call('GET', '/api/v2/users/whoami')) as Whoami).username
    } catch (e) {
      // A token that may only change the password cannot ask who it is; its claims can tell.
      if (!(e instanceof AdminError) || e.reason !== 'ERR_PASSWORD_CHANGE_REQUIRED') throw e
      me = tokenUser(t.access_token)
    }
    const own = target === undefined || target === me
    if (own && current === undefined) current = await p.secret('Current password: ', 'current password', 'pass --current-password P, or pipe it as the first line')
    const np = pos[0] ?? (await p.newPassword(`New password${own ? '' : ` for ${target}`}: `, 'new password', 'pass it as NEW_PASSWORD (gatehouse user passwd NEW_PASSWORD), or pipe it twice (one line each)'))
    const body: Record<string, string> = { new_password: np }
    if (target !== undefined) body.username = target
    if (current !== undefined) body.old_password = current
    await c.call('PUT', '/api/v2/users/password', { body })
    const who = own ? (me ?? target) : target
    if (!own) {
      out(`password changed for ${target}; their earlier tokens were revoked`)
      return 0
    }
    if (who === undefined) {
      out(`password changed; your earlier tokens were revoked; run gatehouse user login`)
      return 0
    }
    // The change revoked every earlier token of ours: log in again so the token file works.
    c.saveTokens(await c.login(who, np))
    out(`password changed for ${who}; logged in again`)
    return 0
  })
}

async function generateToken(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 0, 'no arguments')
  const timeout = str(v['access-token-timeout'])
  if (timeout !== undefined && parseDuration(timeout) === undefined) throw new UsageError(`--access-token-timeout must be a duration like 30s, 4m, 2h, 1d, 1d5h, 1w or infinite, got ${JSON.stringify(timeout)}`)
  return withClient(v, async (c) => {
    const d = (await c.call('POST', '/api/v2/users/tokens', { body: timeout === undefined ? {} : { access_token_timeout: timeout } })) as { access_token?: unknown; token_type?: unknown; expires_in?: unknown }
    if (typeof d?.access_token !== 'string') throw new AdminError('the server answered without a token')
    out(v.json === true ? JSON.stringify(d, null, 2) : d.access_token)
    return 0
  })
}

async function revokeTokens(v: Values, pos: string[]): Promise<number> {
  positionalCount(pos, 1, 'USERNAME')
  const username = pos[0]
  if (username === undefined) throw new UsageError('USERNAME is required')
  return withClient(v, async (c) => {
    const t = c.loadTokens()
    await c.call('DELETE', `/api/v2/users/${encodeURIComponent(username)}/revoke`)
    out(`revoked every token of ${username} issued before now`)
    if (tokenUser(t.access_token) === username) note(`that includes the token in ${c.tokenFile}; ${c.loginHint()}`)
    return 0
  })
}

// ---------------------------------------------------------------------------------------------
// The command table (merged into main.ts's COMMANDS).

const json = { json: { type: 'boolean' } } as const

/** `gatehouse user …`. */
export const USER_COMMANDS: Record<string, AdminCommand> = {
  'user login': {
    usage:
      'gatehouse user login [USERNAME] [PASSWORD] [--org ORG] [--path FILE]\n\n' +
      'Log in to the admin API and write the token file (mode 0600) with access_token, refresh_token and\n' +
      'token_type. Prompts for a missing user name and password (the password without echo); without a\n' +
      'terminal, reads them from stdin, one line each. Prints the login banner first when it is enabled.\n' +
      'When the account must change its password (the first admin login), asks for a new one twice (from\n' +
      'stdin: two more lines), changes it, and logs in with it. --org is accepted and ignored (one organization).\n\n' +
      COMMON_HELP,
    options: { ...COMMON_OPTIONS, org: { type: 'string' } },
    positionals: true,
    run: login,
  },
  'user whoami': {
    usage: 'gatehouse user whoami [--json]\n\nShow the logged-in user: name, role, source, uid and organization.\n\n' + COMMON_HELP,
    options: { ...COMMON_OPTIONS, ...json },
    positionals: true,
    run: whoami,
  },
  'user add': {
    usage:
      'gatehouse user add USERNAME --role admin|readonly|regular [--password P] [--json]\n\n' +
      'Create a local user (admin only). Without --password, asks for it twice (from stdin: two lines).\n' +
      'Passwords need at least 8 characters, an uppercase letter, a lowercase letter, and a number or a\n' +
      'special character (at most 128 characters).\n\n' +
      COMMON_HELP,
    options: { ...COMMON_OPTIONS, ...json, role: { type: 'string', short: 'r' }, password: { type: 'string' } },
    positionals: true,
    run: add,
  },
  'user list': {
    usage: 'gatehouse user list [--json]\n\nList the local users (admin, readonly).\n\n' + COMMON_HELP,
    options: { ...COMMON_OPTIONS, ...json },
    positionals: true,
    run: list,
  },
  'user delete': {
    usage: 'gatehouse user delete USERNAME\n\nDelete a local user (admin only; not yourself).\n\n' + COMMON_HELP,
    options: { ...COMMON_OPTIONS },
    positionals: true,
    run: del,
  },
  'user update': {
    usage:
      'gatehouse user update USERNAME --role admin|readonly|regular\n\n' +
      'Change the role of a local user (admin only; not your own). Tokens carry the role, so the user\'s\n' +
      'earlier tokens are revoked and their console and browser sessions end; they log in again.\n\n' +
      COMMON_HELP,
    options: { ...COMMON_OPTIONS, role: { type: 'string', short: 'r' } },
    positionals: true,
    run: update,
  },
  'user passwd': {
    usage:
      'gatehouse user passwd [NEW_PASSWORD] [--username U] [--current-password P]\n\n' +
      'Change your own password (the current one is required), or, as an admin, the password of --username U.\n' +
      'Prompts for what is missing: the current password, then the new one twice (from stdin: one line each).\n' +
      'Every earlier token of that user is revoked; after changing your own password the CLI logs in again\n' +
      'with the new one and rewrites the token file.\n\n' +
      COMMON_HELP,
    options: { ...COMMON_OPTIONS, username: { type: 'string', short: 'u' }, 'current-password': { type: 'string' } },
    positionals: true,
    run: passwd,
  },
  'user generate-token': {
    usage:
      'gatehouse user generate-token [--access-token-timeout 30d] [--json]\n\n' +
      'Print a new long-lived access token for yourself (local users only), valid 30 days unless\n' +
      '--access-token-timeout says otherwise: 30s, 4m, 2h, 1d, 1d5h, 1w, infinite/unlimited.\n' +
      'Prints the token only, or with --json the token, its type and expires_in.\n\n' +
      COMMON_HELP,
    options: { ...COMMON_OPTIONS, ...json, 'access-token-timeout': { type: 'string' } },
    positionals: true,
    run: generateToken,
  },
  'user revoke-tokens': {
    usage:
      'gatehouse user revoke-tokens USERNAME\n\n' +
      'Revoke every access, refresh and long-lived token of USERNAME issued before now, on both listeners\n' +
      '(admin; anyone for themselves). Tokens issued afterwards work.\n\n' +
      COMMON_HELP,
    options: { ...COMMON_OPTIONS },
    positionals: true,
    run: revokeTokens,
  },
}
