import assert from 'node:assert/strict'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { LineWriter } from '../../src/logWriter.ts'
import { createLogger, writeAccess, type AccessFields } from '../../src/log.ts'
import { responseHeaders } from '../../src/upstream/forward.ts'

/** A write(2) stand-in that records every call and can refuse or shorten writes. */
function recorder(): { calls: string[]; plan: ('ok' | 'eagain' | 'epipe' | number)[]; write: (fd: number, buf: Buffer) => number; text: () => string } {
  const calls: string[] = []
  const plan: ('ok' | 'eagain' | 'epipe' | number)[] = []
  return {
    calls,
    plan,
    write(_fd, buf) {
      const step = plan.shift() ?? 'ok'
      if (step === 'eagain' || step === 'epipe') throw Object.assign(new Error(step), { code: step.toUpperCase() })
      const n = step === 'ok' ? buf.length : Math.min(step, buf.length)
      calls.push(buf.subarray(0, n).toString('utf8'))
      return n
    },
    text: () => calls.join(''),
  }
}

const line = (i: number): string => `{"n":${i},"pad":"${'x'.repeat(20)}"}\n`

describe('LineWriter (the batched log sink)', () => {
  it('holds lines until a batch is full, then writes whole lines, each write at most batchBytes', () => {
    const r = recorder()
    const w = new LineWriter(99, { batchBytes: 100, maxPendingBytes: 1 << 20, flushMs: 60_000 }, { write: r.write })
    w.write(line(1))
    w.write(line(2))
    assert.equal(r.calls.length, 0, 'two short lines stay pending')
    for (let i = 3; i <= 10; i++) w.write(line(i))
    w.flush()
    assert.ok(r.calls.length >= 3)
    for (const c of r.calls) {
      assert.ok(Buffer.byteLength(c) <= 100, `write of ${Buffer.byteLength(c)} bytes`)
      assert.ok(c.endsWith('\n'), 'only whole lines')
    }
    assert.equal(r.text(), Array.from({ length: 10 }, (_, i) => line(i + 1)).join(''), 'every line once, in order')
  })

  it('writeNow writes what is pending and the new line at once, in order', () => {
    const r = recorder()
    const w = new LineWriter(99, { batchBytes: 4096, maxPendingBytes: 1 << 20, flushMs: 60_000 }, { write: r.write })
    w.write('access\n')
    w.writeNow('ready\n')
    assert.equal(r.text(), 'access\nready\n')
  })

  it('defers records and serialises them with their batch, in order with plain lines', () => {
    const r = recorder()
    let serialised = 0
    const w = new LineWriter<{ n: number }>(99, { batchBytes: 4096, maxPendingBytes: 1 << 20, flushMs: 60_000 }, {
      write: r.write,
      serialize: (x) => {
        serialised++
        return `record ${x.n}\n`
      },
    })
    w.defer({ n: 1 })
    w.defer({ n: 2 })
    assert.equal(serialised, 0, 'nothing is serialised before its batch is written')
    w.writeNow('warning\n')
    w.defer({ n: 3 })
    w.flush()
    assert.equal(r.text(), 'record 1\nrecord 2\nwarning\nrecord 3\n')
    assert.equal(serialised, 3)
  })

  it('a batch of records is written once ~batchBytes of them are pending', () => {
    const r = recorder()
    const w = new LineWriter<{ n: number }>(99, { batchBytes: 1024, maxPendingBytes: 1 << 20, flushMs: 60_000 }, { write: r.write, serialize: (x) => `${x.n}\n` })
    for (let i = 0; i < 3; i++) w.defer({ n: i })
    assert.equal(r.calls.length, 0)
    for (let i = 3; i < 4; i++) w.defer({ n: i })
    assert.equal(r.text(), '0\n1\n2\n3\n', 'four records are estimated at 1024 bytes: written')
  })

  it('flushes pending lines on its own after flushMs', async () => {
    const r = recorder()
    const w = new LineWriter(99, { batchBytes: 4096, maxPendingBytes: 1 << 20, flushMs: 20 }, { write: r.write })
    w.write('late\n')
    assert.equal(r.text(), '')
    await new Promise((res) => setTimeout(res, 80))
    assert.equal(r.text(), 'late\n')
  })

  it('a short write is completed; EAGAIN keeps the rest for later without losing or splitting a line', () => {
    const r = recorder()
    const w = new LineWriter(99, { batchBytes: 4096, maxPendingBytes: 1 << 20, flushMs: 60_000 }, { write: r.write })
    w.write('first line\n')
    w.write('second line\n')
    r.plan.push(5, 'eagain')
    w.flush()
    assert.equal(r.text(), 'first', 'five bytes went out, then the descriptor would block')
    w.write('third line\n')
    w.flush()
    assert.equal(r.text(), 'first line\nsecond line\nthird line\n')
  })

  it('past maxPendingBytes new lines are dropped, counted, and the count is logged once writing works', () => {
    const r = recorder()
    const w = new LineWriter(99, { batchBytes: 64, maxPendingBytes: 64, flushMs: 60_000 }, { write: r.write })
    r.plan.push('eagain')
    for (let i = 0; i < 10; i++) w.write(`line ${i} ${'y'.repeat(14)}\n`)
    w.flush()
    assert.equal(r.text(), '', 'the descriptor would block')
    w.flush()
    const out = r.text()
    const dropped = out.split('\n').find((l) => l.includes('log lines dropped'))
    assert.ok(dropped !== undefined, out)
    const n = (JSON.parse(dropped) as { dropped: number }).dropped
    assert.ok(n >= 7, `dropped ${n}`)
    assert.equal(out.split('\n').filter((l) => l.startsWith('line ')).length, 10 - n)
  })

  it('a broken stdout (EPIPE) never throws into the request path', () => {
    const r = recorder()
    const w = new LineWriter(99, { batchBytes: 10, maxPendingBytes: 1 << 20, flushMs: 60_000 }, { write: r.write })
    r.plan.push('epipe')
    assert.doesNotThrow(() => w.write('a line longer than ten\n'))
    w.write('next\n')
    w.flush()
    assert.equal(r.text(), 'next\n')
  })
})

describe('access lines', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-access-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('are valid JSON whatever the strings hold (quotes, backslashes, control and non-ASCII characters)', () => {
    const lines: string[] = []
    const logger = createLogger('info', { write: (s: string) => lines.push(s) })
    const f: AccessFields = {
      requestId: 'r-1',
      method: 'GET',
      path: '/a"b',
      status: 200,
      durationMs: 1.5,
      authMethod: 'oidc',
      user: 'ann\\"\n\u0001é\u2028',
      reason: undefined,
      detail: 'plain detail',
      upstreamStatus: 200,
      aborted: undefined,
    }
    writeAccess(logger, f)
    assert.equal(lines.length, 1)
    const j = JSON.parse(lines[0] as string) as Record<string, unknown>
    assert.equal(j.path, '/a"b')
    assert.equal(j.user, 'ann\\"\n\u0001é\u2028')
    assert.equal(j.detail, 'plain detail')
    assert.equal(j.msg, 'request')
  })

  it('reach a file through the real sink, whole and in order', () => {
    // The real sink writes to fd 1; a child-free check: a LineWriter on a file descriptor.
    const file = path.join(dir, 'out.log')
    const fd = openSync(file, 'w')
    const w = new LineWriter(fd, { batchBytes: 256, maxPendingBytes: 1 << 20, flushMs: 60_000 })
    for (let i = 0; i < 100; i++) w.write(line(i))
    w.flush()
    closeSync(fd)
    assert.equal(readFileSync(file, 'utf8'), Array.from({ length: 100 }, (_, i) => line(i)).join(''))
  })
})

describe('responseHeaders (upstream raw list → client list)', () => {
  const raw = (...kv: string[]): string[] => kv

  it('keeps order, spelling and duplicates (two Set-Cookie stay two)', () => {
    const r = responseHeaders(raw('Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Content-Length', '2'))
    assert.deepEqual(r.list, ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Content-Length', '2'])
    assert.equal(r.contentLength, 2)
  })

  it('drops hop-by-hop headers in any case, and those the Connection header names (never Content-Length)', () => {
    const r = responseHeaders(
      raw('Connection', 'keep-alive, X-Hop, content-length', 'KEEP-ALIVE', 'timeout=5', 'Transfer-Encoding', 'chunked', 'x-hop', 'secret', 'Proxy-Authenticate', 'Basic', 'X-Kept', 'yes', 'Content-Length', '7', 'connection', 'Upgrade', 'Upgrade', 'h2c'),
    )
    assert.deepEqual(r.list, ['X-Kept', 'yes', 'Content-Length', '7'])
    assert.equal(r.contentLength, 7)
  })

  it('reports NaN when there is no Content-Length', () => {
    assert.ok(Number.isNaN(responseHeaders(raw('X-A', 'b')).contentLength))
  })
})
