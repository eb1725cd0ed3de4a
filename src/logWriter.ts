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
 * When stdout cannot take more (EAGAIN on a non-blocking pipe), lines wait for the next tick;
 * past `maxPendingBytes` new lines are dropped and counted, and the count is logged once writing
 * works again — the proxy never stalls or grows without bound because its log reader did.
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

export const PIPE_BUF = 4096

export class LineWriter {
  readonly #fd: number
  readonly #o: LineWriterOptions
  #lines: string[] = []
  /** UTF-16 length of the pending lines: a byte estimate, exact for ASCII JSON. */
  #pending = 0
  #dropped = 0
  /** A batch being written: the rest of it after a short write that would block. */
  #partial: Buffer | undefined
  #timer: NodeJS.Timeout | undefined

  readonly #writeSync: typeof writeSync

  /** `write` is for tests (short writes, EAGAIN); it defaults to fs.writeSync. */
  constructor(fd: number, o: LineWriterOptions, write: (fd: number, buf: Buffer) => number = writeSync) {
    this.#fd = fd
    this.#o = o
    this.#writeSync = write as typeof writeSync
  }

  /** Append a line; written when a batch is full or at the next tick. */
  write(line: string): boolean {
    if (this.#pending + line.length > this.#o.maxPendingBytes) {
      this.#dropped++
      return true
    }
    this.#lines.push(line)
    this.#pending += line.length
    if (this.#pending >= this.#o.batchBytes) this.flush()
    else this.#timer ??= setTimeout(this.#tick, this.#o.flushMs).unref()
    return true
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
      const n = this.#batchEnd()
      const batch = n === this.#lines.length ? this.#lines : this.#lines.slice(0, n)
      this.#lines = n === this.#lines.length ? [] : this.#lines.slice(n)
      const text = batch.join('')
      this.#pending -= text.length
      this.#partial = Buffer.from(text, 'utf8')
    }
  }

  /** How many of the pending lines fit in one batch (at least one). */
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
