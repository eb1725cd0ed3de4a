/**
 * Open the state store that `store.url` names: the embedded file store in stateDir (`file:`), or
 * the shared Redis/Valkey store (`redis://`, `rediss://`; docs/replicas.md).
 */
import type { Logger } from '../log.ts'
import { FileStore } from './fileStore.ts'
import type { IssuerStore } from './store.ts'

/** The `store` settings (the config's `store` group, plain values). */
export interface StoreSettings {
  readonly url: string
  readonly caFile: string | undefined
  readonly username: string | undefined
  readonly password: string | undefined
  readonly passwordFile: string | undefined
  readonly keyPrefix: string
  readonly connectTimeout: number
  readonly commandTimeout: number
  readonly maxStaleness: number
}

/** An opened store, and how to close it (a no-op for the file store). */
export interface OpenedStore {
  readonly store: IssuerStore
  /** `file` or the store URL (never with a password: validation refuses one in it). */
  readonly name: string
  /** What /readyz says of the store. */
  health(): StoreHealth
  close(): Promise<void>
}

/** The store as /readyz reports it: the file store is always there; a shared one may not be. */
export type StoreHealth = { readonly kind: 'file' } | { readonly kind: 'redis'; readonly url: string; readonly connected: boolean; readonly staleMs: number; readonly fresh: boolean }

/**
 * Open the store. `familyTtlMs`: how long a revoked refresh-token family must be remembered (the
 * longest refresh-token plus access-token lifetime).
 *
 * @throws ERR_STORE_UNAVAILABLE when a shared store cannot be reached within its connect timeout
 */
export async function openStore(s: StoreSettings, stateDir: string, logger: Logger, familyTtlMs: number): Promise<OpenedStore> {
  if (s.url === 'file:') return { store: new FileStore(stateDir), name: 'file', health: () => ({ kind: 'file' }), close: async () => {} }
  // Loaded only when asked for: a file-store deployment never loads the Redis client.
  const { RedisStore } = await import('./redisStore.ts')
  const store = await RedisStore.open({
    url: s.url,
    username: s.username,
    password: s.password,
    passwordFile: s.passwordFile,
    caFile: s.caFile,
    keyPrefix: s.keyPrefix,
    connectTimeoutMs: s.connectTimeout,
    commandTimeoutMs: s.commandTimeout,
    maxStalenessMs: s.maxStaleness,
    familyTtlMs,
    logger,
  })
  logger.info({ store: s.url, keyPrefix: s.keyPrefix, maxStalenessMs: s.maxStaleness }, 'connected to the shared state store')
  return { store, name: s.url, health: () => store.status(), close: () => store.close() }
}
