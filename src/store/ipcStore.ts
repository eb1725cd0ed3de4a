/**
 * Sharing the state store between worker processes (`workers: N`).
 *
 * The primary process owns the one `FileStore`; workers send every store operation to it over
 * the cluster IPC channel, so lockout counters, refresh tokens and generations are counted once
 * for all workers (the primary runs one operation at a time). Changes that revoke (token
 * generation, token family, user deletion) and setting changes are broadcast to every worker,
 * and the operation is answered only after every worker acknowledged the update: when the
 * admin API says "revoked", no worker will accept the token any more.
 */
import type { Worker } from 'node:cluster'
import { GatehouseError, type ErrorCode } from '../errors.ts'
import type { FileStore } from './fileStore.ts'
import type { AttemptSlot, IssuerStore, LockPolicy, LockState, RefreshRecord, SessionRecord, SessionTouch, UserRecord } from './store.ts'

type Op = Exclude<keyof FileStore, 'generationSync' | 'familyRevokedSync' | 'onSettingChange'>

interface OpMessage {
  gh: 'store'
  id: number
  op: Op
  args: unknown[]
}
interface ReplyMessage {
  gh: 'store-reply'
  id: number
  ok: boolean
  value?: unknown
  error?: string
  /** The GatehouseError code, when the store failed with one (e.g. ERR_STORE_UNAVAILABLE). */
  code?: ErrorCode
}
type Update = { gen: [string, number | null] } | { fam: string } | { setting: string }
interface SyncMessage {
  gh: 'sync'
  seq: number
  update: Update
}
interface AckMessage {
  gh: 'sync-ack'
  seq: number
}

const MUTATIONS_THAT_REVOKE = new Set<Op>(['setPassword', 'setRole', 'bumpGeneration', 'deleteUser', 'createUser', 'revokeFamily'])
const SETTINGS = new Set<Op>(['putSetting', 'deleteSetting'])
const ACK_TIMEOUT_MS = 2000

/** Worker side: a StateStore whose operations run in the primary. */
export class IpcStore implements IssuerStore {
  #next = 1
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  readonly #gens = new Map<string, number>()
  readonly #families = new Set<string>()
  readonly #settingListeners: ((key: string) => void)[] = []

  private constructor() {
    process.on('message', (m: ReplyMessage | SyncMessage) => {
      if (m?.gh === 'store-reply') {
        const p = this.#pending.get(m.id)
        if (p === undefined) return
        this.#pending.delete(m.id)
        if (m.ok) p.resolve(m.value)
        else p.reject(m.code === undefined ? new Error(m.error ?? 'store operation failed') : new GatehouseError(m.code, { detail: m.error }))
      } else if (m?.gh === 'sync') {
        this.#apply(m.update)
        process.send?.({ gh: 'sync-ack', seq: m.seq } satisfies AckMessage)
      }
    })
  }

  /** Connect to the primary and load the mirror. */
  static async connect(): Promise<IpcStore> {
    const s = new IpcStore()
    const snap = (await s.#call('snapshot', [])) as { generations: Record<string, number>; families: string[] }
    for (const [u, g] of Object.entries(snap.generations)) s.#gens.set(u, g)
    for (const f of snap.families) s.#families.add(f)
    return s
  }

  #apply(u: Update): void {
    if ('gen' in u) {
      const [user, gen] = u.gen
      if (gen === null) this.#gens.delete(user)
      else this.#gens.set(user, gen)
    } else if ('fam' in u) this.#families.add(u.fam)
    else for (const fn of this.#settingListeners) fn(u.setting)
  }

  #call(op: Op, args: unknown[]): Promise<unknown> {
    const id = this.#next++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      process.send?.({ gh: 'store', id, op, args } satisfies OpMessage)
    })
  }

  generationSync(username: string): number | undefined {
    return this.#gens.get(username)
  }
  familyRevokedSync(family: string): boolean {
    return this.#families.has(family)
  }
  onSettingChange(fn: (key: string) => void): void {
    this.#settingListeners.push(fn)
  }

  getUser(username: string): Promise<UserRecord | undefined> {
    return this.#call('getUser', [username]) as Promise<UserRecord | undefined>
  }
  listUsers(): Promise<UserRecord[]> {
    return this.#call('listUsers', []) as Promise<UserRecord[]>
  }
  createUser(u: UserRecord): Promise<boolean> {
    return this.#call('createUser', [u]) as Promise<boolean>
  }
  setPassword(username: string, passwordHash: string, mustChangePassword: boolean): Promise<number | undefined> {
    return this.#call('setPassword', [username, passwordHash, mustChangePassword]) as Promise<number | undefined>
  }
  setRole(username: string, role: UserRecord['role']): Promise<number | undefined> {
    return this.#call('setRole', [username, role]) as Promise<number | undefined>
  }
  bumpGeneration(username: string): Promise<number | undefined> {
    return this.#call('bumpGeneration', [username]) as Promise<number | undefined>
  }
  deleteUser(username: string): Promise<boolean> {
    return this.#call('deleteUser', [username]) as Promise<boolean>
  }
  putRefresh(hash: string, r: RefreshRecord): Promise<void> {
    return this.#call('putRefresh', [hash, r]) as Promise<void>
  }
  useRefresh(hash: string): Promise<RefreshRecord | undefined> {
    return this.#call('useRefresh', [hash]) as Promise<RefreshRecord | undefined>
  }
  revokeFamily(family: string): Promise<void> {
    return this.#call('revokeFamily', [family]) as Promise<void>
  }
  isFamilyRevoked(family: string): Promise<boolean> {
    return this.#call('isFamilyRevoked', [family]) as Promise<boolean>
  }
  reserveAttempt(name: string, policy: LockPolicy, now: number): Promise<AttemptSlot> {
    return this.#call('reserveAttempt', [name, policy, now]) as Promise<AttemptSlot>
  }
  finishAttempt(name: string, success: boolean, policy: LockPolicy, now: number): Promise<LockState> {
    return this.#call('finishAttempt', [name, success, policy, now]) as Promise<LockState>
  }
  lockState(name: string, now: number): Promise<LockState> {
    return this.#call('lockState', [name, now]) as Promise<LockState>
  }
  clearLocks(): Promise<void> {
    return this.#call('clearLocks', []) as Promise<void>
  }
  // Sessions are not mirrored: every check is a touch in the primary, so ending one is
  // immediate for every worker without a broadcast.
  putSession(hash: string, r: SessionRecord): Promise<void> {
    return this.#call('putSession', [hash, r]) as Promise<void>
  }
  getSession(hash: string): Promise<SessionRecord | undefined> {
    return this.#call('getSession', [hash]) as Promise<SessionRecord | undefined>
  }
  touchSession(hash: string, now: number): Promise<SessionTouch> {
    return this.#call('touchSession', [hash, now]) as Promise<SessionTouch>
  }
  updateSessionOidc(hash: string, oidc: NonNullable<SessionRecord['oidc']>): Promise<boolean> {
    return this.#call('updateSessionOidc', [hash, oidc]) as Promise<boolean>
  }
  deleteSession(hash: string): Promise<boolean> {
    return this.#call('deleteSession', [hash]) as Promise<boolean>
  }
  deleteSessionsOf(username: string, method?: SessionRecord['method']): Promise<number> {
    // IPC carries JSON: an undefined argument would arrive as null and match no method.
    return this.#call('deleteSessionsOf', method === undefined ? [username] : [username, method]) as Promise<number>
  }
  getSetting<T>(key: string): Promise<T | undefined> {
    return this.#call('getSetting', [key]) as Promise<T | undefined>
  }
  putSetting(key: string, value: unknown): Promise<void> {
    return this.#call('putSetting', [key, value]) as Promise<void>
  }
  deleteSetting(key: string): Promise<void> {
    return this.#call('deleteSetting', [key]) as Promise<void>
  }
}

/** Primary side: answer the workers' store operations and broadcast what revokes. */
export function serveStore(store: FileStore, workers: () => Worker[]): (worker: Worker) => void {
  let seq = 0
  const acks = new Map<number, { left: Set<number>; done: () => void }>()

  const broadcast = (update: Update): Promise<void> => {
    const s = ++seq
    const targets = workers().filter((w) => w.isConnected())
    if (targets.length === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        acks.delete(s)
        resolve() // a worker that does not answer is dead or dying; do not hang the operation
      }, ACK_TIMEOUT_MS)
      acks.set(s, {
        left: new Set(targets.map((w) => w.id)),
        done: () => {
          clearTimeout(timer)
          acks.delete(s)
          resolve()
        },
      })
      for (const w of targets) w.send({ gh: 'sync', seq: s, update } satisfies SyncMessage)
    })
  }

  const updatesFor = async (op: Op, args: unknown[]): Promise<Update[]> => {
    if (SETTINGS.has(op)) return [{ setting: String(args[0]) }]
    if (!MUTATIONS_THAT_REVOKE.has(op)) return []
    if (op === 'revokeFamily') return [{ fam: String(args[0]) }]
    const user = op === 'createUser' ? (args[0] as UserRecord).username : String(args[0])
    return [{ gen: [user, store.generationSync(user) ?? null] }]
  }

  // One operation at a time, in arrival order: each is atomic for all workers.
  let chain: Promise<void> = Promise.resolve()

  return (worker: Worker) => {
    worker.on('message', (m: OpMessage | AckMessage) => {
      if (m?.gh === 'sync-ack') {
        const a = acks.get(m.seq)
        if (a === undefined) return
        a.left.delete(worker.id)
        if (a.left.size === 0) a.done()
        return
      }
      if (m?.gh !== 'store') return
      chain = chain.then(async () => {
        let reply: ReplyMessage
        try {
          const fn = (store as unknown as Record<string, (...a: unknown[]) => unknown>)[m.op]
          if (typeof fn !== 'function') throw new Error(`unknown store operation ${m.op}`)
          const value = await fn.apply(store, m.args)
          for (const u of await updatesFor(m.op, m.args)) await broadcast(u)
          reply = { gh: 'store-reply', id: m.id, ok: true, value }
        } catch (e) {
          reply = e instanceof GatehouseError ? { gh: 'store-reply', id: m.id, ok: false, error: e.detail, code: e.code } : { gh: 'store-reply', id: m.id, ok: false, error: (e as Error).message }
        }
        if (worker.isConnected()) worker.send(reply)
      })
    })
  }
}
