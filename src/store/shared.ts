/**
 * What a store shared by several replicas adds to the `StateStore`: values created once by
 * whichever replica starts first (the local issuer's signing key). Its presence also tells the
 * local issuer that an empty store is not a fresh install (docs/replicas.md, bootstrapping).
 */

/** A store shared by several processes. */
export interface SharedValues {
  /**
   * The value stored under `name`, or — when there is none — `create()`'s, stored atomically
   * (SET NX): every caller, on every replica, gets the same one. With `readOnly`, a missing value
   * is an error instead.
   */
  sharedValue<T>(name: string, create: () => Promise<T>, opts?: { readonly readOnly?: boolean }): Promise<T>
}

/** Whether `s` is a store shared between replicas. */
export function isSharedStore(s: object): s is SharedValues {
  return typeof (s as Partial<SharedValues>).sharedValue === 'function'
}
