/**
 * One LDAP or Active Directory server set (SPEC §12, docs/directory.md): find a user with the
 * reader, read the groups, map the role, and — at sign-in — bind as the user with the password.
 * The directory is a source of principals for the local issuer; it never issues tokens itself.
 *
 * - Every value from a client goes through RFC 4515 filter escaping (`escape.ts`); a name that
 *   is not exactly the entry's id (LDAP matching ignores case) is refused before any user bind,
 *   so case variants cannot multiply the lockout's attempts.
 * - An empty password is refused before any bind: a simple bind with a DN and no password is an
 *   "unauthenticated bind" (RFC 4513 §5.1.2) that many servers answer with success.
 * - One connection per sign-in or refresh (reader bind, user search, group search, then the
 *   user's bind), each step bounded by `operationTimeoutMs`, each connect by
 *   `connectTimeoutMs`; a server that cannot be reached moves on to the next URL.
 * - TLS always (ldaps, or StartTLS on ldap:// unless `startTls: false` for tests), verified
 *   against the configured CA file, the `security ca-cert` CA and the system CAs.
 */
import { rootCertificates } from 'node:tls'
import type { ConnectionOptions } from 'node:tls'
import type { Client, Entry } from 'ldapts'
import { ldapts } from '../lazyModules.ts'
import { domainDn, type LdapSettings } from '../config/ldap.ts'
import { GatehouseError } from '../errors.ts'
import { escapeFilterValue, firstRdnValue } from './escape.ts'

export type DirectoryRole = 'admin' | 'regular' | 'readonly'

/** A directory user as gatehouse sees one. */
export interface DirectoryUser {
  /** The entry's id value (gatehouse's user name; for AD the sAMAccountName). */
  readonly username: string
  readonly dn: string
  /** Role groups (groupIdAttribute values) the user is in. */
  readonly groups: readonly string[]
  /** Highest role of those groups; undefined: none (may not sign in). */
  readonly role: DirectoryRole | undefined
}

/** AD's LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups, evaluated by the server. */
export const IN_CHAIN = '1.2.840.113556.1.4.1941'
/** AD's userAccountControl ACCOUNTDISABLE bit, tested with LDAP_MATCHING_RULE_BIT_AND. */
const AD_ENABLED_ONLY = '(!(userAccountControl:1.2.840.113556.1.4.803:=2))'
const ROLE_ORDER: readonly DirectoryRole[] = ['admin', 'regular', 'readonly']

/** The schema in effect: the generic keys, or what the Active Directory preset fixes. */
export interface Schema {
  readonly userBaseDn: string
  readonly groupBaseDn: string
  readonly userObjectClass: string
  /** Attributes a sign-in name is matched against (AD: sAMAccountName and userPrincipalName). */
  readonly idAttributes: readonly string[]
  readonly userFilter: string
  readonly groupObjectClass: string
  readonly membership: LdapSettings['membershipAttribute'] | 'adNested'
  readonly groupIdAttribute: string
}

export function schemaOf(s: LdapSettings): Schema {
  if (s.activeDirectoryDomain === '') {
    return { userBaseDn: s.userBaseDn, groupBaseDn: s.groupBaseDn, userObjectClass: s.userObjectClass, idAttributes: [s.userIdAttribute], userFilter: s.userFilter, groupObjectClass: s.groupObjectClass, membership: s.membershipAttribute, groupIdAttribute: s.groupIdAttribute }
  }
  const base = domainDn(s.activeDirectoryDomain)
  return {
    userBaseDn: s.userBaseDn || base,
    groupBaseDn: s.groupBaseDn || base,
    userObjectClass: 'user',
    idAttributes: ['sAMAccountName', 'userPrincipalName'],
    userFilter: `${AD_ENABLED_ONLY}${s.userFilter}`,
    groupObjectClass: 'group',
    membership: 'adNested',
    groupIdAttribute: 'cn',
  }
}

/** The search filter for a sign-in name; `name` is escaped (RFC 4515). */
export function userFilter(schema: Schema, name: string): string {
  const v = escapeFilterValue(name)
  const ids = schema.idAttributes.map((a) => `(${a}=${v})`).join('')
  return `(&(objectClass=${schema.userObjectClass})${schema.idAttributes.length > 1 ? `(|${ids})` : ids}${schema.userFilter})`
}

/** Map role groups to the highest role (admin > regular > readonly). Group names compare without case, as LDAP's cn does. */
export function roleOf(groups: readonly string[], roleGroups: LdapSettings['roleGroups']): DirectoryRole | undefined {
  const have = new Set(groups.map((g) => g.toLowerCase()))
  return ROLE_ORDER.find((r) => roleGroups[r] !== '' && have.has(roleGroups[r].toLowerCase()))
}

/** Why a directory round trip failed (for logs; never a password). */
function unavailable(detail: string, cause?: unknown): GatehouseError {
  return new GatehouseError('ERR_DIRECTORY_UNAVAILABLE', { detail, cause })
}

export interface DirectoryOptions {
  /** PEM CAs trusted besides the system's (the config's caFile, the `security ca-cert` CA). */
  readonly ca: readonly string[]
}

export class Directory {
  readonly #s: LdapSettings
  readonly #schema: Schema
  readonly #tls: ConnectionOptions

  constructor(s: LdapSettings, o: DirectoryOptions) {
    this.#s = s
    this.#schema = schemaOf(s)
    // Giving `ca` replaces Node's default roots: keep them, and add ours.
    this.#tls = { ca: [...rootCertificates, ...o.ca], minVersion: 'TLSv1.2', rejectUnauthorized: true }
  }

  get settings(): LdapSettings {
    return this.#s
  }

  /**
   * Sign-in: the user with this name and password, or undefined when the name is unknown (or not
   * exactly an entry's id) or the password is wrong. An empty password never reaches a bind.
   *
   * @throws ERR_DIRECTORY_UNAVAILABLE
   */
  async authenticate(name: string, password: string): Promise<DirectoryUser | undefined> {
    if (password === '' || name === '') return undefined
    return this.#session(async (c) => {
      const u = await this.#find(c, name)
      if (u === undefined) return undefined
      try {
        await c.bind(u.dn, password)
      } catch (e) {
        if (e instanceof ldapts().InvalidCredentialsError) return undefined
        throw e
      }
      return u
    })
  }

  /**
   * Refresh and sign-in re-checks: the user as the directory has them now (reader only), or
   * undefined when the name no longer matches an entry in the user base and filter.
   *
   * @throws ERR_DIRECTORY_UNAVAILABLE
   */
  async lookup(name: string): Promise<DirectoryUser | undefined> {
    if (name === '') return undefined
    return this.#session((c) => this.#find(c, name))
  }

  /** Whether a server answers a reader bind (for /readyz). @throws ERR_DIRECTORY_UNAVAILABLE */
  async ping(): Promise<void> {
    await this.#session(async () => undefined)
  }

  async #find(c: Client, name: string): Promise<DirectoryUser | undefined> {
    const sc = this.#schema
    const attrs = [...sc.idAttributes, ...(sc.membership === 'memberOf' ? ['memberOf'] : [])]
    const { searchEntries } = await c.search(sc.userBaseDn, { scope: 'sub', filter: userFilter(sc, name), attributes: attrs, sizeLimit: 2, timeLimit: Math.ceil(this.#s.operationTimeoutMs / 1000) })
    if (searchEntries.length !== 1) return undefined // none, or ambiguous: nobody signs in as "one of several"
    const e = searchEntries[0] as Entry
    // The name must be exactly one of the entry's ids: "ALICE" finds alice, but is not her name.
    const ids = sc.idAttributes.flatMap((a) => values(e, a))
    if (!ids.includes(name)) return undefined
    const username = values(e, sc.idAttributes[0] as string)[0] ?? name
    const groups = await this.#groups(c, e, username)
    return { username, dn: e.dn, groups, role: roleOf(groups, this.#s.roleGroups) }
  }

  async #groups(c: Client, user: Entry, username: string): Promise<string[]> {
    const sc = this.#schema
    const idAttr = sc.groupIdAttribute
    if (sc.membership === 'memberOf') return values(user, 'memberOf').flatMap((dn) => firstRdnValue(dn, idAttr) ?? [])
    const filter =
      sc.membership === 'adNested'
        ? `(&(objectClass=${sc.groupObjectClass})(member:${IN_CHAIN}:=${escapeFilterValue(user.dn)}))`
        : `(&(objectClass=${sc.groupObjectClass})(${sc.membership}=${escapeFilterValue(sc.membership === 'memberUid' ? username : user.dn)}))`
    const { searchEntries } = await c.search(sc.groupBaseDn, { scope: 'sub', filter, attributes: [idAttr], sizeLimit: 1000, timeLimit: Math.ceil(this.#s.operationTimeoutMs / 1000) })
    return searchEntries.flatMap((g) => values(g, idAttr))
  }

  /** Connect to the first server that answers, bind as the reader, run `fn`, unbind. */
  async #session<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    let last: unknown
    for (const url of this.#s.urls) {
      const tlsOptions = { ...this.#tls, servername: serverName(url) }
      // ldapts speaks TLS from the first byte whenever tlsOptions is given: only for ldaps://.
      const c = new (ldapts().Client)({ url, connectTimeout: this.#s.connectTimeoutMs, timeout: this.#s.operationTimeoutMs, ...(url.startsWith('ldaps:') ? { tlsOptions } : {}) })
      let connected = false
      try {
        if (url.startsWith('ldap:') && this.#s.startTls) await c.startTLS(tlsOptions)
        try {
          await c.bind(this.#s.bindDn, this.#s.bindPassword)
        } catch (e) {
          // A refused reader is a configuration fault, not a wrong user password.
          if (e instanceof ldapts().InvalidCredentialsError) throw unavailable(`${url}: the reader bind (${this.#s.bindDn}) was refused: check authentication.ldap.bindDn and its password`)
          throw e
        }
        connected = true
        return await fn(c)
      } catch (e) {
        if (e instanceof GatehouseError) throw e
        // Failures before the reader is bound (connect, TLS, timeout) try the next server;
        // a failure in the middle of a conversation is not retried elsewhere.
        last = e
        if (connected) throw unavailable(`${url}: ${describe(e)}`, e)
      } finally {
        await c.unbind().catch(() => undefined)
      }
    }
    throw unavailable(`no directory server answered (${this.#s.urls.join(', ')}): ${describe(last)}`, last)
  }
}

function serverName(url: string): string | undefined {
  try {
    const h = new URL(url).hostname.replace(/^\[|\]$/g, '')
    return /^[\d.]+$/.test(h) || h.includes(':') ? undefined : h
  } catch {
    return undefined
  }
}

function values(e: Entry, attr: string): string[] {
  const key = Object.keys(e).find((k) => k.toLowerCase() === attr.toLowerCase())
  const v = key === undefined ? undefined : e[key]
  if (v === undefined) return []
  return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)))
}

function describe(e: unknown): string {
  if (e === undefined) return 'no server configured'
  const err = e as { code?: string | number; message?: string }
  return `${err.code === undefined ? '' : `${String(err.code)} `}${err.message ?? String(e)}`.slice(0, 300)
}
