/**
 * `gatehouse user ldap …` (Weka's `weka user ldap` names): set up, show, change, enable, disable
 * and reset the directory users' settings through `/api/v2/ldap` (docs/directory.md, docs/api.md).
 * The reader's password comes from --reader-password, --reader-password-file, or a prompt without
 * echo; it is never printed (`show` says only whether one is set).
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { AdminError, COMMON_HELP, COMMON_OPTIONS, registerSecret, str, withClient, type AdminCommand, UsageError, type Values } from './adminClient.ts'
import { Prompter } from './user.ts'

type Settings = Record<string, unknown>

function out(text: string): void {
  process.stdout.write(`${text}\n`)
}

const ROWS: [string, string][] = [
  ['enabled', 'enabled'], ['source', 'settings from'], ['urls', 'server URIs'], ['start_tls', 'StartTLS'], ['domain', 'AD domain'],
  ['bind_dn', 'reader'], ['bind_password_set', 'reader password set'],
  ['user_base_dn', 'user base DN'], ['user_object_class', 'user object class'], ['user_id_attribute', 'user id attribute'], ['user_filter', 'user filter'],
  ['group_base_dn', 'group base DN'], ['group_object_class', 'group object class'], ['membership_attribute', 'membership attribute'], ['group_id_attribute', 'group id attribute'],
  ['admin_group', 'admin group'], ['regular_group', 'regular group'], ['readonly_group', 'readonly group'],
  ['connect_timeout', 'connect timeout (s)'], ['operation_timeout', 'operation timeout (s)'], ['local_shadows_directory', 'local users shadow directory users'],
]

function text(s: Settings): string {
  const present = ROWS.filter(([k]) => s[k] !== undefined && s[k] !== '')
  const w = Math.max(...present.map(([, label]) => label.length)) + 1
  return present
    .map(([k, label]) => {
      const v = s[k]
      const shown = k === 'source' ? (v === 'store' ? 'runtime settings (gatehouse user ldap …)' : 'configuration (authentication.ldap)') : Array.isArray(v) ? v.join(', ') : typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v)
      return `${`${label}:`.padEnd(w)} ${shown}`
    })
    .join('\n')
}

function show(v: Values, s: Settings): number {
  out(v.json === true ? JSON.stringify(s, null, 2) : text(s))
  return 0
}

function noPositionals(pos: string[]): void {
  if (pos.length > 0) throw new UsageError('this command takes no positional arguments; every setting is a --flag (see --help)')
}

function yesNo(v: string, flag: string): boolean {
  if (/^(yes|true|on|1)$/i.test(v)) return true
  if (/^(no|false|off|0)$/i.test(v)) return false
  throw new UsageError(`${flag} must be yes or no, got ${JSON.stringify(v)}`)
}

/** CLI flag → API field. */
const STRING_FLAGS: Record<string, string> = {
  'reader-username': 'bind_dn',
  'base-dn': 'user_base_dn',
  'user-object-class': 'user_object_class',
  'user-id-attribute': 'user_id_attribute',
  'user-filter': 'user_filter',
  'group-base-dn': 'group_base_dn',
  'group-object-class': 'group_object_class',
  'group-membership-attribute': 'membership_attribute',
  'group-id-attribute': 'group_id_attribute',
  'cluster-admin-group': 'admin_group',
  'regular-group': 'regular_group',
  'readonly-group': 'readonly_group',
  domain: 'domain',
}

/** The request body from the flags; the reader's password from its flag, its file, or a prompt (`ask`). */
async function bodyOf(v: Values, ask: boolean): Promise<Settings> {
  const b: Settings = {}
  const uris = v['server-uri']
  if (Array.isArray(uris) && uris.length > 0) b.urls = uris.flatMap((u) => u.split(',')).map((u) => u.trim()).filter((u) => u !== '')
  for (const [flag, field] of Object.entries(STRING_FLAGS)) {
    const x = str(v[flag])
    if (x !== undefined) b[field] = x
  }
  const tls = str(v['start-tls'])
  if (tls !== undefined) b.start_tls = yesNo(tls, '--start-tls')
  const shadow = str(v['local-shadows-directory'])
  if (shadow !== undefined) b.local_shadows_directory = yesNo(shadow, '--local-shadows-directory')
  const t = str(v['server-timeout-secs'])
  if (t !== undefined) {
    const n = Number(t)
    if (!/^\d+(\.\d+)?$/.test(t) || !(n >= 0.1 && n <= 60)) throw new UsageError(`--server-timeout-secs must be seconds from 0.1 to 60, got ${JSON.stringify(t)}`)
    b.connect_timeout = n
    b.operation_timeout = n
  }
  const pw = str(v['reader-password'])
  const file = str(v['reader-password-file'])
  if (pw !== undefined && file !== undefined) throw new UsageError('give --reader-password or --reader-password-file, not both')
  if (pw !== undefined) {
    registerSecret(pw)
    b.bind_password = pw
  } else if (file !== undefined) {
    try {
      b.bind_password = readFileSync(path.resolve(file), 'utf8').replace(/\r?\n$/, '')
    } catch (e) {
      throw new AdminError(`cannot read --reader-password-file ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    registerSecret(b.bind_password as string)
  } else if (ask) {
    const p = new Prompter()
    try {
      b.bind_password = await p.secret('Reader password: ', 'reader password', '--reader-password-file FILE')
    } finally {
      p.close()
    }
  }
  return b
}

function setup(ad: boolean) {
  return async (v: Values, pos: string[]): Promise<number> => {
    noPositionals(pos)
    const body = await bodyOf(v, true)
    const need = ad ? [['urls', '--server-uri'], ['domain', '--domain'], ['bind_dn', '--reader-username']] : [['urls', '--server-uri'], ['user_base_dn', '--base-dn'], ['bind_dn', '--reader-username']]
    for (const [field, flag] of need) if (body[field as string] === undefined) throw new UsageError(`${flag} is required`)
    return withClient(v, async (c) => show(v, (await c.call('POST', ad ? '/api/v2/ldap/ad' : '/api/v2/ldap', { body })) as Settings))
  }
}

async function update(v: Values, pos: string[]): Promise<number> {
  noPositionals(pos)
  const body = await bodyOf(v, false)
  if (Object.keys(body).length === 0) throw new UsageError('give at least one setting to change (see --help)')
  return withClient(v, async (c) => show(v, (await c.call('PUT', '/api/v2/ldap', { body })) as Settings))
}

function action(method: string, apiPath: string) {
  return async (v: Values, pos: string[]): Promise<number> => {
    noPositionals(pos)
    return withClient(v, async (c) => show(v, (await c.call(method, apiPath)) as Settings))
  }
}

const json = { json: { type: 'boolean' } } as const
const base = { ...COMMON_OPTIONS, ...json }
const SETTING_OPTIONS: AdminCommand['options'] = {
  'server-uri': { type: 'string', multiple: true },
  'reader-password': { type: 'string' },
  'reader-password-file': { type: 'string' },
  'start-tls': { type: 'string' },
  'server-timeout-secs': { type: 'string' },
  'local-shadows-directory': { type: 'string' },
  ...Object.fromEntries(Object.keys(STRING_FLAGS).map((f) => [f, { type: 'string' as const }])),
}

function cmd(usage: string, run: AdminCommand['run'], extra: AdminCommand['options'] = {}): AdminCommand {
  return { usage: `${usage}\n\n${COMMON_HELP}\n  --json       print the server's data as JSON`, options: { ...base, ...extra }, positionals: true, run }
}

const SETTINGS_HELP =
  'Settings:\n' +
  '  --server-uri URI                 ldaps://HOST[:PORT], or ldap://HOST[:PORT] with StartTLS (repeat, or comma-separate, for fallbacks)\n' +
  '  --reader-username DN             the reader account that searches users and groups\n' +
  '  --reader-password P | --reader-password-file F   its password (setup prompts without echo when neither is given)\n' +
  '  --base-dn DN                     where users are searched\n' +
  '  --user-object-class C            default inetOrgPerson\n' +
  '  --user-id-attribute A            the sign-in name, default uid\n' +
  '  --user-filter F                  an extra filter user entries must match, e.g. (!(pwdAccountLockedTime=*))\n' +
  '  --group-base-dn DN               where groups are searched\n' +
  '  --group-object-class C           default groupOfNames\n' +
  '  --group-membership-attribute A   member | uniqueMember | memberUid | memberOf\n' +
  '  --group-id-attribute A           default cn\n' +
  '  --cluster-admin-group G, --regular-group G, --readonly-group G   the groups granting each role\n' +
  '  --start-tls yes|no               StartTLS on ldap:// URIs (default yes; no is for tests)\n' +
  '  --server-timeout-secs N          connect and operation timeout\n' +
  '  --local-shadows-directory yes|no a local user wins over a directory user of the same name (default no: refused)'

/** `gatehouse user ldap …`. */
export const LDAP_COMMANDS: Record<string, AdminCommand> = {
  'user ldap setup': cmd(
    'gatehouse user ldap setup --server-uri URI --base-dn DN --group-base-dn DN --reader-username DN [--reader-password P] --cluster-admin-group G [--regular-group G] [--readonly-group G] [settings…] [--json]\n\n' +
      'Set up directory users (admin): replaces the runtime settings, which override authentication.ldap, and enables them.\n\n' +
      SETTINGS_HELP,
    setup(false),
    SETTING_OPTIONS,
  ),
  'user ldap setup-ad': cmd(
    'gatehouse user ldap setup-ad --server-uri URI --domain DOMAIN --reader-username DN [--reader-password P] --cluster-admin-group G [--regular-group G] [--readonly-group G] [--json]\n\n' +
      'Set up Active Directory users (admin): sAMAccountName or userPrincipalName sign-in, memberOf with nested groups,\n' +
      'disabled accounts refused; base DNs default to the domain’s (--base-dn, --group-base-dn narrow them).\n\n' +
      SETTINGS_HELP,
    setup(true),
    SETTING_OPTIONS,
  ),
  'user ldap show': cmd('gatehouse user ldap show [--json]\n\nShow the directory settings in effect and where they come from (admin). The reader’s password is never shown.', action('GET', '/api/v2/ldap')),
  'user ldap update': cmd('gatehouse user ldap update [settings…] [--json]\n\nChange some directory settings (admin); the others stay.\n\n' + SETTINGS_HELP, update, SETTING_OPTIONS),
  'user ldap enable': cmd('gatehouse user ldap enable [--json]\n\nLet directory users sign in again (admin).', action('POST', '/api/v2/ldap/enable')),
  'user ldap disable': cmd('gatehouse user ldap disable [--json]\n\nStop directory sign-ins and refreshes (admin); the settings stay.', action('POST', '/api/v2/ldap/disable')),
  'user ldap reset': cmd('gatehouse user ldap reset [--json]\n\nForget the runtime settings (admin): authentication.ldap from the configuration applies again.', action('DELETE', '/api/v2/ldap')),
}
