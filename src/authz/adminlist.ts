/**
 * Weaviate's admin list (W22, SPEC §6). Disabled: every authenticated principal may do
 * everything. Enabled: `users`/`groups` may do everything, `readonlyUsers`/`readonlyGroups` may
 * read, anyone else gets 403. Anonymous is judged as the user `anonymous`. Matching is exact
 * and case-sensitive.
 */
import type { Principal } from '../http/principal.ts'
import type { Access } from './profiles.ts'

export interface AdminListConfig {
  readonly enabled: boolean
  readonly users: readonly string[]
  readonly readonlyUsers: readonly string[]
  readonly groups: readonly string[]
  readonly readonlyGroups: readonly string[]
}

/** A decision with the rule that produced it. */
export interface Decision {
  readonly allowed: boolean
  readonly rule: string
}

/** Compiled admin list: sets, built once. */
export class AdminList {
  readonly #enabled: boolean
  readonly #users: ReadonlySet<string>
  readonly #readonlyUsers: ReadonlySet<string>
  readonly #groups: ReadonlySet<string>
  readonly #readonlyGroups: ReadonlySet<string>

  constructor(c: AdminListConfig) {
    this.#enabled = c.enabled
    this.#users = new Set(c.users)
    this.#readonlyUsers = new Set(c.readonlyUsers)
    this.#groups = new Set(c.groups)
    this.#readonlyGroups = new Set(c.readonlyGroups)
  }

  /** Decide whether `principal` may perform a request needing `access`. */
  decide(principal: Principal, access: Access): Decision {
    if (access === 'public') return { allowed: true, rule: 'public path' }
    if (access === 'authenticated') return { allowed: true, rule: 'authentication only, no role needed' }
    if (!this.#enabled) return { allowed: true, rule: 'adminlist disabled: every authenticated principal may do everything' }
    if (this.#users.has(principal.user)) return { allowed: true, rule: `adminlist: user '${principal.user}' is an admin` }
    const g = principal.groups.find((x) => this.#groups.has(x))
    if (g !== undefined) return { allowed: true, rule: `adminlist: group '${g}' is an admin group` }
    if (access === 'read') {
      if (this.#readonlyUsers.has(principal.user)) return { allowed: true, rule: `adminlist: user '${principal.user}' may read` }
      const rg = principal.groups.find((x) => this.#readonlyGroups.has(x))
      if (rg !== undefined) return { allowed: true, rule: `adminlist: group '${rg}' may read` }
    }
    const readonly = this.#readonlyUsers.has(principal.user) || principal.groups.some((x) => this.#readonlyGroups.has(x))
    return {
      allowed: false,
      rule: readonly ? `adminlist: user '${principal.user}' may only read` : `adminlist: user '${principal.user}' is on no list`,
    }
  }
}
