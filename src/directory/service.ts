/**
 * The directory as the local issuer and the admin API see it: the effective settings (the
 * runtime copy `gatehouse user ldap …` stored in the state store under `ldap`, else
 * `authentication.ldap` from the configuration), a `Directory` built for them (rebuilt when they
 * or the trusted CA change), the health `/readyz` names, and the admin operations behind
 * `/api/v2/ldap` (docs/directory.md, docs/api.md).
 */
import { readFileSync } from 'node:fs'
import { ldapProblems, MEMBERSHIP_ATTRIBUTES, type LdapSettings } from '../config/ldap.ts'
import { GatehouseError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { StateStore } from '../store/store.ts'
import { Directory } from './directory.ts'

/** The state store's key of the runtime settings. */
export const LDAP_SETTING = 'ldap'

/** What `/readyz` says about the directory (never a reason to fail readiness). */
export interface DirectoryHealth {
  readonly enabled: boolean
  readonly reachable?: boolean
  readonly checkedAt?: string
  readonly lastError?: string
}

export interface DirectoryServiceOptions {
  /** `authentication.ldap` as settings (config/ldap.ts `ldapFromConfig`). */
  readonly config: LdapSettings
  /** `authentication.ldap.caFile`. */
  readonly caFile: string | undefined
  /** The CA of `security ca-cert` (upstream/trust.ts), read on every use. */
  readonly extraCa?: () => string | undefined
  readonly store: StateStore
  readonly logger: Logger
  readonly now?: () => number
}

const HEALTH_TTL_MS = 10_000
const PROBE_WAIT_MS = 1000

export class DirectoryService {
  readonly #o: DirectoryServiceOptions
  readonly #now: () => number
  #built: { key: string; dir: Directory } | undefined
  #health: { at: number; ok: boolean; error: string | undefined } | undefined
  #probe: Promise<void> | undefined

  constructor(o: DirectoryServiceOptions) {
    this.#o = o
    this.#now = o.now ?? Date.now
  }

  /** The settings in effect (stored ones override the configuration). */
  async settings(): Promise<LdapSettings> {
    return (await this.#o.store.getSetting<LdapSettings>(LDAP_SETTING)) ?? this.#o.config
  }

  /** The directory when enabled (and its settings usable), else undefined. */
  async current(): Promise<Directory | undefined> {
    const s = await this.settings()
    if (!s.enabled || ldapProblems(s).length > 0) return undefined
    const ca = [...(this.#o.caFile === undefined ? [] : [readCa(this.#o.caFile)]), ...(this.#o.extraCa?.() === undefined ? [] : [this.#o.extraCa?.() as string])]
    const key = JSON.stringify([s, ca])
    if (this.#built?.key !== key) this.#built = { key, dir: new Directory(s, { ca }) }
    return this.#built.dir
  }

  /** Note the outcome of a round trip for `/readyz`. */
  observe(ok: boolean, error?: GatehouseError): void {
    this.#health = { at: this.#now(), ok, error: ok ? undefined : error?.detail }
    if (!ok) this.#o.logger.warn({ reason: error?.code, detail: error?.detail }, 'the user directory cannot be reached')
  }

  /** For `/readyz`: the last outcome, refreshed by a reader bind when older than 10 s. */
  async health(): Promise<DirectoryHealth> {
    const dir = await this.current()
    if (dir === undefined) return { enabled: false }
    if (this.#health === undefined || this.#now() - this.#health.at > HEALTH_TTL_MS) {
      this.#probe ??= dir
        .ping()
        .then(() => this.observe(true))
        .catch((e: unknown) => this.observe(false, e instanceof GatehouseError ? e : new GatehouseError('ERR_DIRECTORY_UNAVAILABLE', { detail: String(e) })))
        .finally(() => (this.#probe = undefined))
    }
    // A slow directory must not make the probe slow: wait at most a second, then say "unknown".
    if (this.#probe !== undefined) await Promise.race([this.#probe, new Promise((r) => setTimeout(r, PROBE_WAIT_MS).unref())])
    const h = this.#health
    if (h === undefined) return { enabled: true, reachable: false, lastError: 'no answer yet (checking)' }
    return { enabled: true, reachable: h.ok, checkedAt: new Date(h.at).toISOString(), ...(h.error === undefined ? {} : { lastError: h.error }) }
  }

  // --- admin operations (gatehouse user ldap …) ---------------------------------------------

  /** `show`: the settings in effect and where they come from; never the reader's password. */
  async show(): Promise<Record<string, unknown>> {
    const stored = await this.#o.store.getSetting<LdapSettings>(LDAP_SETTING)
    return publicView(stored ?? this.#o.config, stored === undefined ? 'config' : 'store')
  }

  /** `setup` / `setup-ad`: replace the runtime settings with a full set (enabled). */
  async setup(body: Record<string, unknown>, ad: boolean): Promise<Record<string, unknown>> {
    const base: LdapSettings = {
      ...this.#o.config,
      enabled: true,
      userBaseDn: '', groupBaseDn: '', userFilter: '',
      userObjectClass: 'inetOrgPerson', userIdAttribute: 'uid', groupObjectClass: 'groupOfNames', membershipAttribute: 'member', groupIdAttribute: 'cn',
      roleGroups: { admin: '', regular: '', readonly: '' },
      activeDirectoryDomain: '', bindPassword: '', bindDn: '', urls: [], startTls: true,
    }
    const required = ad ? ['urls', 'domain', 'bind_dn', 'bind_password'] : ['urls', 'bind_dn', 'bind_password', 'user_base_dn']
    for (const k of required) if (body[k] === undefined) throw bad(`${k} is required for setup${ad ? '-ad' : ''}`)
    if (ad && body.domain === '') throw bad('domain must not be empty for setup-ad')
    return this.#save(apply(base, body, ad))
  }

  /** `update`: change the given fields of the settings in effect. */
  async update(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.#save(apply(await this.settings(), body, false))
  }

  async setEnabled(enabled: boolean): Promise<Record<string, unknown>> {
    return this.#save({ ...(await this.settings()), enabled })
  }

  /** `reset`: forget the runtime settings; the configuration applies again. */
  async reset(): Promise<Record<string, unknown>> {
    await this.#o.store.deleteSetting(LDAP_SETTING)
    this.#health = undefined
    return this.show()
  }

  async #save(s: LdapSettings): Promise<Record<string, unknown>> {
    const problems = ldapProblems(s)
    if (problems.length > 0) throw bad(problems.map((p) => `${SNAKE[p.key] ?? p.key}: ${p.message} (${p.remedy})`).join('; '))
    await this.#o.store.putSetting(LDAP_SETTING, s)
    this.#health = undefined
    return publicView(s, 'store')
  }
}

/** The configured CA file, read at each use (a rotated file is picked up); unreadable: the directory is unavailable. */
function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (e) {
    throw new GatehouseError('ERR_DIRECTORY_UNAVAILABLE', { detail: `authentication.ldap.caFile ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})` })
  }
}

function bad(message: string): GatehouseError {
  return new GatehouseError('ERR_BAD_REQUEST', { message })
}

/** API field → settings key (Weka's snake_case on the wire). */
const FIELDS: Record<string, keyof LdapSettings | 'admin_group' | 'regular_group' | 'readonly_group'> = {
  urls: 'urls', start_tls: 'startTls', bind_dn: 'bindDn', bind_password: 'bindPassword',
  user_base_dn: 'userBaseDn', user_object_class: 'userObjectClass', user_id_attribute: 'userIdAttribute', user_filter: 'userFilter',
  group_base_dn: 'groupBaseDn', group_object_class: 'groupObjectClass', membership_attribute: 'membershipAttribute', group_id_attribute: 'groupIdAttribute',
  admin_group: 'admin_group', regular_group: 'regular_group', readonly_group: 'readonly_group',
  connect_timeout: 'connectTimeoutMs', operation_timeout: 'operationTimeoutMs', domain: 'activeDirectoryDomain', local_shadows_directory: 'localShadowsDirectory',
}
const SNAKE: Partial<Record<string, string>> = Object.fromEntries(Object.entries(FIELDS).map(([k, v]) => [v, k]))

/** Apply API fields to settings; unknown fields and wrong types are 400 (never guessed). */
function apply(s: LdapSettings, body: Record<string, unknown>, ad: boolean): LdapSettings {
  if (!ad && body.domain !== undefined && body.domain !== '' && s.activeDirectoryDomain === '') throw bad('domain is set with setup-ad (gatehouse user ldap setup-ad)')
  const out: Record<string, unknown> = { ...s, roleGroups: { ...s.roleGroups } }
  for (const [k, v] of Object.entries(body)) {
    const key = FIELDS[k]
    if (key === undefined) throw bad(`unknown field ${JSON.stringify(k)}; known: ${Object.keys(FIELDS).join(', ')}`)
    if (k === 'urls') {
      const list = typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter((x) => x !== '') : v
      if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw bad('urls must be a list of ldaps:// or ldap:// URLs')
      out.urls = list
    } else if (k === 'start_tls' || k === 'local_shadows_directory') {
      if (typeof v !== 'boolean') throw bad(`${k} must be true or false`)
      out[key] = v
    } else if (k === 'connect_timeout' || k === 'operation_timeout') {
      if (typeof v !== 'number' || !(v >= 0.1 && v <= 60)) throw bad(`${k} must be a number of seconds from 0.1 to 60`)
      out[key] = Math.round(v * 1000)
    } else {
      if (typeof v !== 'string') throw bad(`${k} must be a string`)
      if (k === 'membership_attribute' && !(MEMBERSHIP_ATTRIBUTES as readonly string[]).includes(v)) throw bad(`membership_attribute must be one of ${MEMBERSHIP_ATTRIBUTES.join(', ')}`)
      if (k.endsWith('_group')) (out.roleGroups as Record<string, string>)[k.slice(0, -'_group'.length)] = v
      else out[key] = v
    }
  }
  return out as unknown as LdapSettings
}

function publicView(s: LdapSettings, source: 'config' | 'store'): Record<string, unknown> {
  return {
    source,
    enabled: s.enabled,
    urls: s.urls,
    start_tls: s.startTls,
    bind_dn: s.bindDn,
    bind_password_set: s.bindPassword !== '',
    ...(s.activeDirectoryDomain === '' ? {} : { domain: s.activeDirectoryDomain }),
    user_base_dn: s.userBaseDn,
    user_object_class: s.userObjectClass,
    user_id_attribute: s.userIdAttribute,
    user_filter: s.userFilter,
    group_base_dn: s.groupBaseDn,
    group_object_class: s.groupObjectClass,
    membership_attribute: s.membershipAttribute,
    group_id_attribute: s.groupIdAttribute,
    admin_group: s.roleGroups.admin,
    regular_group: s.roleGroups.regular,
    readonly_group: s.roleGroups.readonly,
    connect_timeout: s.connectTimeoutMs / 1000,
    operation_timeout: s.operationTimeoutMs / 1000,
    local_shadows_directory: s.localShadowsDirectory,
  }
}
