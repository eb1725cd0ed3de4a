/**
 * A minimum receive rate for request bodies.
 *
 * An idle timeout alone is per pause: a client that sends one byte every two seconds never
 * pauses long enough and holds a connection (and an upstream request) for ever. This measures
 * the bytes that arrive from the network in windows of `windowMs` after a grace period, and
 * reports a body whose average over a window falls below `minBytesPerSecond` (as Apache's
 * mod_reqtimeout `MinRate`, and Envoy's stream idle plus overload manager, bound slow bodies).
 *
 * Time that the body is paused by its reader (backpressure: the upstream reads slowly, or
 * nothing reads it yet) is gatehouse's, not the client's: a window with any such pause is not
 * judged. Works for HTTP/1.1 `IncomingMessage`s and HTTP/2 compat requests and streams alike
 * (anything that is a `Readable` fed by `push`), and for the admin API's small JSON bodies with
 * a shorter window.
 */
import type { Readable } from 'node:stream'

/** The rate to keep up; `minBytesPerSecond` 0 disables the check. */
export interface BodyRate {
  readonly minBytesPerSecond: number
  /** Window over which the rate is averaged (ms). */
  readonly windowMs: number
  /** Time from the start before the first window begins (ms). */
  readonly graceMs: number
}

/** Stops watching (idempotent). */
export type StopWatching = () => void

const noop: StopWatching = () => {}

/**
 * Watch `body` until it ends, closes or `stop` is called; call `onSlow` once, with a detail for
 * the log (never body content), when a window's average is below the rate. The caller answers
 * (typically 408 `ERR_REQUEST_TIMEOUT`) and aborts what the body was feeding.
 *
 * Bytes are counted where they enter the stream (`push`), so watching never consumes the body
 * or changes its flow; the body may be piped or read later.
 */
export function watchBodyRate(body: Readable, rate: BodyRate, onSlow: (detail: string) => void): StopWatching {
  if (rate.minBytesPerSecond <= 0 || body.readableEnded || body.destroyed || (body as { complete?: boolean }).complete === true) return noop
  let bytes = 0
  const push = body.push
  body.push = function (this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk !== null && chunk !== undefined) bytes += (chunk as { length: number }).length
    return push.call(this, chunk, encoding)
  }
  let windowStart = 0
  let windowBytes = 0
  // Set by a pause or resume during the window: the window is not judged (backpressure is not
  // the client's, and a window that was partly paused says little about the client's rate).
  let pausedInWindow = false
  const onPause = (): void => {
    pausedInWindow = true
  }
  let timer: NodeJS.Timeout | undefined
  const begin = (): void => {
    windowStart = Date.now()
    windowBytes = bytes
    pausedInWindow = false
    timer = setTimeout(check, rate.windowMs)
    timer.unref()
  }
  const check = (): void => {
    timer = undefined
    // Every byte has arrived (`complete` on node:http and HTTP/2 compat requests); what is left
    // is the reader's pace, not the client's.
    if ((body as { complete?: boolean }).complete === true) {
      stop()
      return
    }
    // Not flowing now (paused, or no reader yet): the body waits on gatehouse, not the client.
    if (!pausedInWindow && body.readableFlowing === true) {
      const ms = Date.now() - windowStart
      const got = bytes - windowBytes
      if (got * 1000 < rate.minBytesPerSecond * ms) {
        stop()
        onSlow(`request body too slow: ${got} bytes in ${ms} ms, below ${rate.minBytesPerSecond} bytes/s`)
        return
      }
    }
    begin()
  }
  let stopped = false
  const stop = (): void => {
    if (stopped) return
    stopped = true
    if (timer !== undefined) clearTimeout(timer)
    body.push = push
    body.off('pause', onPause)
    body.off('resume', onPause)
    body.off('end', stop)
    body.off('close', stop)
  }
  body.on('pause', onPause)
  body.on('resume', onPause)
  body.once('end', stop)
  body.once('close', stop)
  timer = setTimeout(begin, rate.graceMs)
  timer.unref()
  return stop
}
