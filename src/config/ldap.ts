/**
 * Directory settings (SPEC §12, docs/directory.md): one shape for `authentication.ldap` in the
 * configuration and for the runtime copy `gatehouse user ldap …` keeps in the state store, and
 * one list of rules both are checked against — so the API refuses exactly what the
 * configuration would.
 */
import { existsSync, readFileSync } from 'node:fs'
import type { Config, LdapDirectoryShape } from './types.ts'

/** The effective directory settings (durations in ms; the reader's password resolved). */
export interface LdapSettings extends LdapDirectoryShape {
  readonly enabled: boolean
  readonly urls: readonly string[]
  readonly startTls: boolean
  readonly bindDn: string
  /** Never printed, logged or returned by `show`. */
  readonly bindPassword: string
  readonly connectTimeoutMs: number
  readonly operationTimeoutMs: number
  /** Active Directory preset when not empty (docs/directory.md). */
  readonly activeDirectoryDomain: string
  readonly localShadowsDirectory: boolean
}

export const MEMBERSHIP_ATTRIBUTES = ['member', 'uniqueMember', 'memberUid', 'memberOf'] as const

/** One problem with a setting: the settings key, what is wrong, what to do. */
export interface LdapProblem {
  readonly key: keyof LdapSettings | 'bindPasswordFile' | 'caFile'
  readonly message: string
  readonly remedy: string
}

// An attribute description or object class name (RFC 4512 descr or numeric OID), no options.
const ATTR_RE = /^(?:[A-Za-z][A-Za-z0-9-]{0,63}|\d+(?:\.\d+){1,40})$/
const DOMAIN_RE = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/** The `authentication.ldap` section as settings (the password file is read here). */
export function ldapFromConfig(l: Config['authentication']['ldap']): LdapSettings {
  let bindPassword = l.bindPassword ?? ''
  if (l.bindPassword === undefined && l.bindPasswordFile !== undefined) {
    try {
      bindPassword = readFileSync(l.bindPasswordFile, 'utf8').replace(/\r?\n$/, '')
    } catch {
      bindPassword = '' // validation names the missing file
    }
  }
  return {
    enabled: l.enabled,
    urls: l.urls,
    startTls: l.startTls,
    bindDn: l.bindDn,
    bindPassword,
    userBaseDn: l.userBaseDn,
    userObjectClass: l.userObjectClass,
    userIdAttribute: l.userIdAttribute,
    userFilter: l.userFilter,
    groupBaseDn: l.groupBaseDn,
    groupObjectClass: l.groupObjectClass,
    membershipAttribute: l.membershipAttribute,
    groupIdAttribute: l.groupIdAttribute,
    roleGroups: l.roleGroups,
    connectTimeoutMs: l.timeouts.connect,
    operationTimeoutMs: l.timeouts.operation,
    activeDirectoryDomain: l.activeDirectory.domain,
    localShadowsDirectory: l.localShadowsDirectory,
  }
}

/** The DN of an Active Directory domain: `corp.example.com` → `DC=corp,DC=example,DC=com`. */
export function domainDn(domain: string): string {
  // DOMAIN_RE admits only letters, digits and dashes per label: nothing needs RFC 4514 escaping.
  return domain.split('.').map((l) => `DC=${l}`).join(',')
}

/**
 * Every problem of enabled settings (nothing is checked while disabled). `warnings` gets the
 * clear-text case (`ldap://` without StartTLS), which is allowed for tests.
 */
export function ldapProblems(s: LdapSettings, warnings: string[] = []): LdapProblem[] {
  const out: LdapProblem[] = []
  const add = (key: LdapProblem['key'], message: string, remedy: string): void => void out.push({ key, message, remedy })
  if (!s.enabled) return out
  if (s.urls.length === 0) add('urls', 'no directory server is given', 'list one or more servers, e.g. [ldaps://ldap.example.com]')
  s.urls.forEach((raw) => {
    let u: URL | undefined
    try {
      u = new URL(raw)
    } catch {
      /* below */
    }
    if (u === undefined || !(u.protocol === 'ldap:' || u.protocol === 'ldaps:') || u.hostname === '' || (u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
      add('urls', `${JSON.stringify(raw)} is not ldaps://HOST[:PORT] or ldap://HOST[:PORT]`, 'give the scheme, host and port only (the base DNs have keys of their own)')
    } else if (u.protocol === 'ldap:' && !s.startTls) {
      warnings.push(`authentication.ldap: ${raw} without StartTLS sends the reader's and every user's password in clear text; use ldaps:// or startTls: true outside tests`)
    }
  })
  if (s.bindDn === '') add('bindDn', 'no reader DN is given (an anonymous reader is not supported)', 'set the DN of a read-only account, e.g. cn=gatehouse,ou=system,dc=example,dc=org')
  if (s.bindPassword === '') add('bindPassword', 'the reader has no password', 'set it from GATEHOUSE_LDAP_BIND_PASSWORD or bindPasswordFile (a mounted Secret)')
  const ad = s.activeDirectoryDomain !== ''
  if (ad && !DOMAIN_RE.test(s.activeDirectoryDomain)) add('activeDirectoryDomain', `${JSON.stringify(s.activeDirectoryDomain)} is not a DNS domain`, 'give the Active Directory domain, e.g. corp.example.com')
  if (!ad) {
    if (s.userBaseDn === '') add('userBaseDn', 'no user base DN is given', 'set where users live, e.g. ou=people,dc=example,dc=org')
    if (s.groupBaseDn === '' && s.membershipAttribute !== 'memberOf') add('groupBaseDn', 'no group base DN is given', 'set where groups live, e.g. ou=groups,dc=example,dc=org')
    for (const k of ['userObjectClass', 'userIdAttribute', 'groupObjectClass', 'groupIdAttribute'] as const) {
      if (!ATTR_RE.test(s[k])) add(k, `${JSON.stringify(s[k])} is not an attribute or object class name`, 'use a plain name such as uid, cn, inetOrgPerson or groupOfNames')
    }
  }
  if (!(MEMBERSHIP_ATTRIBUTES as readonly string[]).includes(s.membershipAttribute)) add('membershipAttribute', `${JSON.stringify(s.membershipAttribute)} is not a membership attribute`, `use one of ${MEMBERSHIP_ATTRIBUTES.join(', ')}`)
  if (s.userFilter !== '' && !(s.userFilter.startsWith('(') && s.userFilter.endsWith(')') && balanced(s.userFilter))) add('userFilter', 'not a parenthesised LDAP filter', 'write one filter such as (!(pwdAccountLockedTime=*)), or leave it empty')
  const g = s.roleGroups
  if (g.admin === '' && g.regular === '' && g.readonly === '') add('roleGroups', 'no role group is given, so nobody could sign in', 'name at least one group, e.g. roleGroups.admin: gatehouse-admins')
  const named = [g.admin, g.regular, g.readonly].filter((x) => x !== '').map((x) => x.toLowerCase())
  if (new Set(named).size !== named.length) add('roleGroups', 'one group grants two roles', 'give each role its own group')
  return out
}

function balanced(f: string): boolean {
  let depth = 0
  for (let i = 0; i < f.length; i++) {
    const ch = f[i]
    if (ch === '\\') i += 2
    else if (ch === '(') depth++
    else if (ch === ')' && --depth < 0) return false
  }
  return depth === 0
}

type Add = (path: string, message: string, remedy: string, value?: string) => void

/** `authentication.ldap` at start: every problem, named by its key path (exit 2). */
export function validateLdap(c: Config, add: Add, warnings: string[]): void {
  const l = c.authentication.ldap
  if (!l.enabled) return
  const p = 'authentication.ldap'
  if (!c.authentication.local.enabled) add(`${p}.enabled`, 'directory users sign in through the local issuer (its login API and tokens)', 'set authentication.local.enabled: true as well')
  if (l.bindPassword !== undefined && l.bindPasswordFile !== undefined) add(`${p}.bindPasswordFile`, 'both bindPassword and bindPasswordFile are set', 'keep one: GATEHOUSE_LDAP_BIND_PASSWORD or a file')
  if (l.bindPasswordFile !== undefined && !existsSync(l.bindPasswordFile)) add(`${p}.bindPasswordFile`, 'the file does not exist', 'give the path of a file holding the reader’s password (a mounted Secret)', JSON.stringify(l.bindPasswordFile))
  if (l.caFile !== undefined && !existsSync(l.caFile)) add(`${p}.caFile`, 'the file does not exist', 'give the path of a PEM file with the CA that signed the directory’s certificate', JSON.stringify(l.caFile))
  const s = ldapFromConfig(l)
  const keyPath: Partial<Record<LdapProblem['key'], string>> = { connectTimeoutMs: 'timeouts.connect', operationTimeoutMs: 'timeouts.operation', activeDirectoryDomain: 'activeDirectory.domain' }
  for (const pr of ldapProblems(s, warnings)) {
    if (pr.key === 'bindPassword' && l.bindPasswordFile !== undefined) continue // the file problem above says it
    add(`${p}.${keyPath[pr.key] ?? pr.key}`, pr.message, pr.remedy, pr.key === 'bindPassword' ? undefined : JSON.stringify(s[pr.key as keyof LdapSettings]))
  }
}
