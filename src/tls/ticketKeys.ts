/**
 * TLS session-ticket keys: one key for every process of an instance, rotated on a schedule.
 *
 * A session ticket (RFC 5077 for TLS 1.2, the PSK tickets of RFC 8446 for TLS 1.3) is the
 * session state encrypted under the server's ticket key; a client that presents it skips the
 * certificate signature and key exchange of a full handshake. Node gives every secure context
 * its own random key, so with `workers: N` a ticket issued by one worker does not resume on
 * another, and the key never changes while the process runs. Here the primary (or the single
 * process) generates the key, hands it to every worker over the cluster IPC channel before the
 * worker listens, and replaces it every `tls.ticketKeyRotation`, on wall-clock boundaries.
 *
 * Node holds one 48-byte key per context (16 name, 16 HMAC, 16 AES; `setTicketKeys`), and its
 * ticket callback (src/crypto/crypto_context.cc, `TicketCompatibilityCallback`) declines a
 * ticket whose name is not the current key's: a ticket issued before a rotation costs one full
 * handshake after it. There is no previous key to fall back on (HAProxy keeps three, Go a week's
 * worth); docs/benchmarks.md discusses the period. The key is a secret: it is never logged.
 */
import type { Worker } from 'node:cluster'
import { randomBytes } from 'node:crypto'
import type { SecureContextOptions } from 'node:tls'
import type { SecureContextTarget } from './tls.ts'

/** Name (16) + HMAC secret (16) + AES key (16), the layout `setTicketKeys` takes. */
const KEY_BYTES = 48
/** How long a worker waits for the primary's key before it gives up starting. */
const HANDOFF_TIMEOUT_MS = 10_000

interface KeyRequest {
  gh: 'ticket-key-req'
}
interface KeyMessage {
  gh: 'ticket-key'
  /** hex */
  key: string
}

/** A server whose ticket key can be replaced (https.Server, tls.Server, Http2SecureServer). */
export interface TicketKeyTarget {
  setTicketKeys(keys: Buffer): void
}

/** The key the listeners of this process use now; `set` applies a new one to all of them. */
export class TicketKeys {
  #current: Buffer
  readonly #targets: TicketKeyTarget[] = []
  #stop: () => void = () => {}

  constructor(key: Buffer) {
    if (key.byteLength !== KEY_BYTES) throw new TypeError(`a ticket key is ${KEY_BYTES} bytes`)
    this.#current = key
  }

  get current(): Buffer {
    return this.#current
  }

  /** Options for creating a listener with the current key. */
  options(): Pick<SecureContextOptions, 'ticketKeys'> {
    return { ticketKeys: this.#current }
  }

  /** Replace the key of every attached listener: new tickets use it, older tickets stop resuming. */
  set(key: Buffer): void {
    if (key.byteLength !== KEY_BYTES) throw new TypeError(`a ticket key is ${KEY_BYTES} bytes`)
    this.#current = key
    for (const t of this.#targets) t.setTicketKeys(key)
  }

  attach(targets: readonly TicketKeyTarget[]): void {
    this.#targets.push(...targets)
  }

  /**
   * A certificate change builds a new secure context, which would otherwise start with the key
   * the server was created with (Node keeps the creation option, not `setTicketKeys`' value).
   */
  keepKeyOn(t: SecureContextTarget): SecureContextTarget {
    return { setSecureContext: (o) => t.setSecureContext({ ...o, ticketKeys: this.#current }) }
  }

  stop(): void {
    this.#stop()
  }

  /** A single process: its own key, rotated by its own timer. */
  static rotating(periodMs: number): TicketKeys {
    const k = new TicketKeys(newTicketKey())
    k.#stop = onBoundaries(periodMs, () => k.set(newTicketKey()))
    return k
  }

  /** A worker: ask the primary for the key, then follow its rotations. */
  static fromPrimary(): Promise<TicketKeys> {
    return new Promise((resolve, reject) => {
      let keys: TicketKeys | undefined
      const timer = setTimeout(() => reject(new Error('the primary did not hand over the TLS ticket key')), HANDOFF_TIMEOUT_MS)
      const onMessage = (m: KeyMessage | undefined): void => {
        if (m?.gh !== 'ticket-key') return
        const key = Buffer.from(m.key, 'hex')
        if (keys !== undefined) return keys.set(key)
        clearTimeout(timer)
        keys = new TicketKeys(key)
        keys.#stop = () => process.off('message', onMessage)
        resolve(keys)
      }
      process.on('message', onMessage)
      process.send?.({ gh: 'ticket-key-req' } satisfies KeyRequest)
    })
  }
}

/** 48 random bytes. */
export function newTicketKey(): Buffer {
  return randomBytes(KEY_BYTES)
}

/**
 * Primary: one key for all workers, replaced every `periodMs` and sent to every worker at once.
 * Returns how to attach a new worker (it asks for the key before it listens) and how to stop.
 */
export function serveTicketKeys(periodMs: number, all: () => readonly Worker[]): { attach(w: Worker): void; stop(): void } {
  let key = newTicketKey()
  const send = (w: Worker): void => {
    if (w.isConnected()) w.send({ gh: 'ticket-key', key: key.toString('hex') } satisfies KeyMessage)
  }
  const stop = onBoundaries(periodMs, () => {
    key = newTicketKey()
    for (const w of all()) send(w)
  })
  return {
    attach: (w) =>
      w.on('message', (m: KeyRequest | undefined) => {
        if (m?.gh === 'ticket-key-req') send(w)
      }),
    stop,
  }
}

/**
 * Call `fn` at every multiple of `periodMs` of the wall clock (0: never), so that every process
 * of an instance rotates at the same instants, whenever it started.
 */
function onBoundaries(periodMs: number, fn: () => void): () => void {
  if (periodMs <= 0) return () => {}
  let timer: NodeJS.Timeout | undefined
  const arm = (): void => {
    timer = setTimeout(
      () => {
        fn()
        arm()
      },
      periodMs - (Date.now() % periodMs),
    )
    timer.unref()
  }
  arm()
  return () => clearTimeout(timer)
}
