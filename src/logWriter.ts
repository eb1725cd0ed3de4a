/**
 * The process's log sink: whole lines, batched into few write(2) calls on stdout.
 *
 * Access lines are appended and written when a batch is full or at the next flush tick (every
 * `flushMs`); other lines (startup, warnings, errors: rare) are written at once, after whatever
 * is pending, so the order of lines is kept. Writes are synchronous, like pino's default
 * destination: a batch is one write(2) of whole lines, no thread-pool round trip, and nothing is
 * in flight when the process exits. A batch is at most `batchBytes`; with `workers: N` that is
 * PIPE_BUF (4096), so lines of different workers never interleave even on a pipe.
 *
 * On a blocking stdout a reader that stops reading holds the writer (as it would pino's default
 * destination). On a non-blocking one that would block (EAGAIN), lines wait for the next tick;
 * past `maxPendingBytes` new lines are dropped and counted, and the count is logged once writing
 * works again, so memory stays bounded.
 *
 * Records (`defer`) are kept as they are and serialised only when their batch is written: one
 * tight loop over a few hundred records costs less per record than building each line in the
 * middle of its request (measured: ~5% of a proxied request's CPU).
 *
 * This replaces sonic-boom's asynchronous mode, whose per-line work (the byte length of the whole
 * pending buffer on every write, a Buffer copy of each written batch) cost ~10 µs a request.
 */
import { writeSync } from 'node:fs'

export interface LineWriterOptions {
  /** Most bytes in one write(2) (whole lines; a longer line goes alone). */
  readonly batchBytes: number
  /** Lines waiting beyond this are dropped (and counted). */
  readonly maxPendingBytes: number
  /** Flush tick in ms (timer unref'd). */
  readonly flushMs: number
}

/** Bytes a deferred record is assumed to take until it is serialised (an access line is ~250). */
const RECORD_ESTIMATE = 256

export const PIPE_BUF = 4096

export class LineWriter<R extends object = object> {
  readonly #fd: number
  readonly #o: LineWriterOptions
  readonly #serialize: (record: R) => string
  /** Lines, and records still to be serialised. */
  #lines: (string | R)[] = []
  /** UTF-16 length of the pending lines: a byte estimate, exact for ASCII JSON. */
  #pending = 0
  #dropped = 0
  /** A batch being written: the rest of it after a short write that would block. */
  #partial: Buffer | undefined
  #timer: NodeJS.Timeout | undefined

  readonly #writeSync: typeof writeSync

  /**
   * @param hooks.serialize turns a deferred record into its line (with the newline)
   * @param hooks.write for tests (short writes, EAGAIN); defaults to fs.writeSync
   */
  constructor(fd: number, o: LineWriterOptions, hooks: { serialize?: (record: R) => string; write?: (fd: number, buf: Buffer) => number } = {}) {
    this.#fd = fd
    this.#o = o
    this.#serialize = hooks.serialize ?? String
    this.#writeSync = (hooks.write ?? writeSync) as typeof writeSync
  }

  /** Append a line; written when a batch is full or at the next tick. */
  write(line: string): boolean {
    this.#append(line, line.length)
    return true
  }

  /** Append a record, serialised when its batch is written. */
  defer(record: R): void {
    this.#append(record, RECORD_ESTIMATE)
  }

  #append(item: string | R, size: number): void {
    if (this.#pending + size > this.#o.maxPendingBytes) {
      this.#dropped++
      return
    }
    this.#lines.push(item)
    this.#pending += size
    if (this.#pending >= this.#o.batchBytes) this.flush()
    else this.#timer ??= setTimeout(this.#tick, this.#o.flushMs).unref()
  }

  /** Append a line and write everything pending now. */
  writeNow(line: string): boolean {
    this.write(line)
    this.flush()
    return true
  }

  readonly #tick = (): void => {
    this.#timer = undefined
    this.flush()
  }

  /** Write every pending line (in batches); on EAGAIN keep the rest for the next tick. */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    for (;;) {
      if (this.#partial !== undefined && !this.#writePartial()) {
        this.#timer = setTimeout(this.#tick, this.#o.flushMs).unref()
        return
      }
      if (this.#lines.length === 0) {
        if (this.#dropped === 0) return
        this.#noteDrops()
      }
      this.#serializeAll()
      const n = this.#batchEnd()
      const batch = n === this.#lines.length ? this.#lines : this.#lines.slice(0, n)
      this.#lines = n === this.#lines.length ? [] : this.#lines.slice(n)
      const text = (batch as string[]).join('')
      this.#pending -= text.length
      this.#partial = Buffer.from(text, 'utf8')
    }
  }

  /** Serialise the deferred records in place (and make the pending size exact). */
  #serializeAll(): void {
    const lines = this.#lines
    let bytes = 0
    for (let i = 0; i < lines.length; i++) {
      const x = lines[i] as string | R
      const line = typeof x === 'string' ? x : this.#serialize(x)
      lines[i] = line
      bytes += line.length
    }
    this.#pending = bytes
  }

  /** How many of the (serialised) pending lines fit in one batch (at least one). */
  #batchEnd(): number {
    if (this.#pending <= this.#o.batchBytes) return this.#lines.length
    let bytes = 0
    for (let i = 0; i < this.#lines.length; i++) {
      bytes += (this.#lines[i] as string).length
      if (bytes > this.#o.batchBytes) return Math.max(i, 1)
    }
    return this.#lines.length
  }

  /** Write the batch in hand; false when the descriptor would block (the rest stays in hand). */
  #writePartial(): boolean {
    let buf = this.#partial as Buffer
    while (buf.length > 0) {
      try {
        buf = buf.subarray(this.#writeSync(this.#fd, buf))
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          this.#partial = buf
          return false
        }
        // stdout closed, broken or full (EPIPE, EBADF, ENOSPC, EIO): logging must never take
        // the proxy down; this batch is lost and the next one is tried afresh.
        break
      }
    }
    this.#partial = undefined
    return true
  }

  #noteDrops(): void {
    const n = this.#dropped
    this.#dropped = 0
    const line = `{"level":"warn","time":"${new Date().toISOString()}","service":"gatehouse","dropped":${n},"msg":"log lines dropped: stdout did not accept them fast enough (more than ${this.#o.maxPendingBytes} bytes waiting)"}\n`
    this.#lines.push(line)
    this.#pending += line.length
  }
}
