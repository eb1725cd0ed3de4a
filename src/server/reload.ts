/**
 * What a configuration reload may change. The listeners, TLS on/off, the state directory, the
 * worker count and the local-user issuer are bound at start: a change to them is reported as
 * "needs a restart" and the running value is kept, while every other key takes effect for the
 * next request (nginx's `reload` works the same way for what it cannot rebind).
 */
import { leaves } from '../config/schema.ts'
import type { Config } from '../config/types.ts'

/** Key prefixes (dotted) that only a restart can change. */
export const RESTART_ONLY: readonly string[] = [
  'listen.address',
  'listen.port',
  'admin',
  'tls.enabled',
  'tls.certFile',
  'tls.keyFile',
  'tls.minVersion',
  'tls.ciphers',
  'tls.watchInterval',
  'tls.ticketKeyRotation',
  'workers',
  'stateDir',
  'limits.maxHeaderBytes',
  'authentication.local',
  'upstream.grpcUrl',
  'http2',
  'grpcListener',
  'metrics',
]

/** The outcome of comparing the running configuration with a newly loaded one. */
export interface ReloadPlan {
  /** The configuration to apply: the new one with the restart-only keys kept as they run. */
  readonly config: Config
  /** Keys whose new value takes effect now. */
  readonly changed: readonly string[]
  /** Keys whose new value was ignored until a restart. */
  readonly restartRequired: readonly string[]
}

/** Compare and merge; never throws. */
export function planReload(running: Config, next: Config): ReloadPlan {
  const merged = structuredClone(next) as Config
  const changed: string[] = []
  const restartRequired: string[] = []
  for (const [p] of leaves()) {
    const before = valueAt(running, p)
    const after = valueAt(next, p)
    if (JSON.stringify(before) === JSON.stringify(after)) continue
    if (RESTART_ONLY.some((r) => p === r || p.startsWith(`${r}.`))) {
      restartRequired.push(p)
      setAt(merged, p, structuredClone(before))
    } else {
      changed.push(p)
    }
  }
  return { config: deepFreeze(merged), changed, restartRequired }
}

/** True when any key under one of `prefixes` changed. */
export function touches(changed: readonly string[], ...prefixes: string[]): boolean {
  return changed.some((c) => prefixes.some((p) => c === p || c.startsWith(`${p}.`)))
}

function valueAt(obj: unknown, path: string): unknown {
  let cur = obj
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[part]
  }
  return cur
}

function setAt(obj: unknown, path: string, value: unknown): void {
  const parts = path.split('.')
  let cur = obj as Record<string, unknown>
  for (const part of parts.slice(0, -1)) cur = cur[part] as Record<string, unknown>
  cur[parts[parts.length - 1] as string] = value
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}
