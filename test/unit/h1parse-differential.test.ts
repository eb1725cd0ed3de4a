/**
 * Differential test of the upstream response parser (src/upstream/h1parse.ts) against llhttp,
 * the parser of node:http's client (strict mode: `insecureHTTPParser: false`).
 *
 * A seeded PRNG generates a few hundred responses, valid and malformed (status lines, header
 * shapes, Content-Length / Transfer-Encoding combinations, chunk extensions, trailers, obs-fold,
 * bare LF / CR, NUL, huge values, 1xx, 204/304, HEAD). The same bytes, split at the same random
 * points, go to h1parse (packet by packet, as the pool feeds it) and to `http.request` against a
 * raw `net` server on 127.0.0.1:0 that writes the pieces one by one and then closes.
 *
 * Compared: accepted (a complete response) or not; status; the header list; the body bytes. The
 * only disagreements allowed are a refusal by h1parse of a shape llhttp accepts, for the reasons
 * in {@link STRICTER} (refusal code checked), and the one leniency in {@link LENIENT} (equal
 * Content-Length values, relayed as one). The same lists are in docs/security.md ("The upstream
 * parser and llhttp"). Any other acceptance by h1parse of what llhttp refuses fails.
 *
 * Reproduce a failure with `GATEHOUSE_DIFF_SEED=<seed> GATEHOUSE_DIFF_CASES=<n>`; each failure
 * prints the case index, its features and its bytes.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { responseHeaders } from '../../src/upstream/forward.ts'
import { ResponseParser } from '../../src/upstream/h1parse.ts'

/**
 * Shapes h1parse refuses and llhttp (strict) accepts, each with its reason. A case that h1parse
 * refuses while llhttp accepts must carry at least one of these features. Kept in step with
 * docs/security.md ("h1parse and llhttp").
 */
const STRICTER: Readonly<Record<string, { codes: readonly string[]; reason: string }>> = {
  'status-http20': {
    codes: ['HPE_INVALID_CONSTANT'],
    reason: '`HTTP/2.0` (any version but 1.0 and 1.1) in the status line: llhttp takes any single-digit version; an upstream that names another protocol on an HTTP/1.1 connection is not the server gatehouse meant to talk to',
  },
  'status-reason-ctl': {
    codes: ['HPE_INVALID_STATUS'],
    reason: 'a control character (other than HTAB) in the reason phrase: llhttp passes it on; no server sends one, and it would reach logs and clients',
  },
  'te-not-chunked': {
    codes: ['HPE_INVALID_TRANSFER_ENCODING'],
    reason: 'a Transfer-Encoding other than `chunked` alone (`identity`, `gzip, chunked`, `chunked, identity`, `chunked,`, `xchunked`): llhttp reads the body to the close (RFC 9112 §6.3); gatehouse relays only bodies whose framing it can restate, and a coding list is the classic smuggling lever',
  },
  'te-twice': {
    codes: ['HPE_INVALID_TRANSFER_ENCODING'],
    reason: 'two Transfer-Encoding lines: llhttp combines them; no honest response sends two',
  },
  'te-trailing-ws': {
    codes: ['HPE_INVALID_TRANSFER_ENCODING'],
    reason: 'whitespace after `chunked` (`chunked<HTAB>`, `chunked<SP>`): llhttp 9 reads `chunked<HTAB>` as another coding (body to the close) while the trimmed field value says chunked — the parsers would disagree on the framing, so neither reading is trusted',
  },
}

/**
 * The one deliberate leniency: equal Content-Length values, repeated or as a list (`5, 5`).
 * llhttp refuses them; RFC 9110 §8.6 lets a recipient accept identical values and use one, and
 * gatehouse relays a single normalized `Content-Length` (checked here on every such case), so
 * the client's parser never sees the repeat. Differing values are refused by both.
 */
const LENIENT: Readonly<Record<string, string>> = {
  'cl-equal-list': 'Content-Length: 5, 5 — accepted, relayed as one Content-Length (RFC 9110 §8.6)',
  'cl-equal-repeat': 'two Content-Length: 5 lines — accepted, relayed as one Content-Length (RFC 9110 §8.6)',
}

// mulberry32: small, seeded, reproducible.
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Case {
  index: number
  method: 'GET' | 'HEAD'
  bytes: Buffer
  cuts: number[]
  features: string[]
}

const NAMES = ['Content-Type', 'X-Request-Id', 'Set-Cookie', 'ETag', 'Cache-Control', 'X-A', 'x-lower', 'Vary', 'Date', 'Server', 'Link', 'X-Weird_Name', "X-!#$%&'*+.^`|~"]

function generate(index: number, seed: number): Case {
  const r = prng(seed + index * 7919)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T
  const chance = (p: number): boolean => r() < p
  const features: string[] = []
  const f = (name: string): void => {
    features.push(name)
  }
  const printable = (n: number): string => {
    let s = ''
    for (let i = 0; i < n; i++) s += String.fromCharCode(33 + Math.floor(r() * 94))
    return s
  }
  const method = chance(0.1) ? 'HEAD' : 'GET'
  if (method === 'HEAD') f('head')

  // Status line.
  let status = pick([200, 200, 200, 201, 204, 206, 301, 304, 400, 404, 500, 503])
  let statusLine = `HTTP/1.1 ${status} ${pick(['OK', 'Whatever', 'Not Found', 'Très bien'.replace('è', '\xe8'), ''])}`
  if (chance(0.15)) {
    const v = pick(['http10', 'bad-version', 'four-digit', 'two-digit', 'no-status', 'lower', 'icy', 'double-space', 'reason-ctl', 'reason-tab', 'no-reason-space', 'http20', 'status-600', 'leading-zero'] as const)
    f(`status-${v}`)
    if (v === 'http10') statusLine = statusLine.replace('HTTP/1.1', 'HTTP/1.0')
    else if (v === 'bad-version') statusLine = statusLine.replace('HTTP/1.1', 'HTTP/1.2')
    else if (v === 'four-digit') statusLine = `HTTP/1.1 2000 OK`
    else if (v === 'two-digit') statusLine = `HTTP/1.1 20 OK`
    else if (v === 'no-status') statusLine = `HTTP/1.1 OK`
    else if (v === 'lower') statusLine = statusLine.replace('HTTP', 'http')
    else if (v === 'icy') statusLine = statusLine.replace('HTTP/1.1', 'ICY')
    else if (v === 'double-space') statusLine = statusLine.replace(' ', '  ')
    else if (v === 'reason-ctl') statusLine = `HTTP/1.1 ${status} O\x01K`
    else if (v === 'reason-tab') statusLine = `HTTP/1.1 ${status} O\tK`
    else if (v === 'no-reason-space') statusLine = `HTTP/1.1 ${status}`
    else if (v === 'http20') statusLine = statusLine.replace('HTTP/1.1', 'HTTP/2.0')
    else if (v === 'status-600') {
      status = 600
      statusLine = 'HTTP/1.1 600 Odd'
    } else statusLine = `HTTP/1.1 0${status} OK`
  }

  // Ordinary header fields.
  const fields: string[] = []
  const nFields = Math.floor(r() * 6)
  for (let i = 0; i < nFields; i++) fields.push(`${pick(NAMES)}: ${printable(1 + Math.floor(r() * 20))}`)
  if (chance(0.25)) {
    const v = pick(['obs-fold', 'space-before-colon', 'empty-value', 'trailing-ws', 'leading-tab', 'nul', 'ctl', 'del', 'obs-text', 'bad-name', 'empty-name', 'big-value', 'huge-value', 'no-colon', 'vt'] as const)
    f(`header-${v}`)
    const at = Math.floor(r() * (fields.length + 1))
    const line = {
      'obs-fold': 'X-Fold: a\r\n folded',
      'space-before-colon': 'X-Space : a',
      'empty-value': 'X-Empty:',
      'trailing-ws': 'X-Trail: value  \t ',
      'leading-tab': 'X-Lead:\t\tvalue',
      nul: 'X-Nul: a\0b',
      ctl: 'X-Ctl: a\x01b',
      del: 'X-Del: a\x7fb',
      'obs-text': 'X-Obs: caf\xe9 \xff',
      'bad-name': 'X(Bad): a',
      'empty-name': ': a',
      'big-value': `X-Big: ${'b'.repeat(4000)}`,
      'huge-value': `X-Huge: ${'h'.repeat(40_000)}`,
      'no-colon': 'NoColonHere',
      vt: 'X-Vt: a\x0bb',
    }[v]
    fields.splice(at, 0, line)
  }
  if (chance(0.15)) fields.push(pick(['Connection: close', 'Connection: keep-alive', 'Connection: x-foo, close', 'Keep-Alive: timeout=5']))

  // Framing and body.
  const payload = printable(Math.floor(r() * 40))
  let body = ''
  const framing = pick(['cl', 'cl', 'cl', 'chunked', 'chunked', 'close', 'cl-mutant', 'te-mutant', 'cl-te'] as const)
  if (framing === 'cl') {
    fields.push(`Content-Length: ${payload.length}`)
    body = payload
    const roll = r()
    if (roll < 0.15) {
      f('cl-short-body')
      body = payload.slice(0, Math.floor(payload.length / 2))
    } else if (roll < 0.3) {
      f('cl-extra-bytes')
      body = `${payload}EXTRA`
    }
  } else if (framing === 'cl-mutant') {
    const n = payload.length
    const v = pick([`${n}, ${n}`, `${n},${n}`, `${n}, ${n + 1}`, `+${n}`, ` ${n} `, `0x${n.toString(16)}`, '', `${n}${n}`, '99999999999999999999', `${n},`, `0${n}`, `${n}.0`] as const)
    f(`cl-value:${JSON.stringify(v)}`)
    if (v === `${n}, ${n}` || v === `${n},${n}`) f('cl-equal-list')
    fields.push(`Content-Length: ${v}`)
    if (chance(0.3)) {
      const same = chance(0.5)
      f(same ? 'cl-twice-same' : 'cl-twice-differ')
      if (same && /^\s*\d+\s*$/.test(v) && Number(v) === n) f('cl-equal-repeat')
      fields.push(`Content-Length: ${same ? n : n + 1}`)
    }
    body = payload
  } else if (framing === 'chunked' || framing === 'te-mutant' || framing === 'cl-te') {
    let te = 'chunked'
    if (framing === 'te-mutant') {
      te = pick(['Chunked', 'CHUNKED', 'gzip, chunked', 'chunked, identity', 'identity', 'xchunked', 'chunked ', ' chunked', 'chunked,', 'chunked\t'] as const)
      f(`te-value:${JSON.stringify(te)}`)
      if (!/^\s*chunked\s*$/i.test(te)) f('te-not-chunked')
      else if (/\s$/.test(te)) f('te-trailing-ws')
    }
    fields.push(`Transfer-Encoding: ${te}`)
    if (framing === 'cl-te') {
      f('cl-and-te')
      fields.splice(chance(0.5) ? 0 : fields.length, 0, `Content-Length: ${payload.length}`)
    }
    if (chance(0.05)) {
      f('te-twice')
      fields.push('Transfer-Encoding: chunked')
    }
    // Chunks.
    let rest = payload
    const parts: string[] = []
    while (rest.length > 0) {
      const n = 1 + Math.floor(r() * Math.min(rest.length, 15))
      let size = n.toString(16)
      if (chance(0.1)) size = size.toUpperCase().padStart(3, '0')
      let ext = ''
      if (chance(0.15)) {
        const v = pick([';a=b', ';a="quoted"', ';a', ' ;a=b', ';a=b;c', ';\x01', '; a = b', 'junk'] as const)
        f(`chunk-ext:${JSON.stringify(v)}`)
        if (v === ';\x01') f('chunk-ext-ctl')
        if (v === 'junk' || v.startsWith(' ') || v.includes(' ')) f('chunk-ext-bad')
        ext = v
      }
      parts.push(`${size}${ext}\r\n${rest.slice(0, n)}\r\n`)
      rest = rest.slice(n)
    }
    let last = '0\r\n'
    if (chance(0.15)) {
      const v = pick(['X-Trailer: t\r\n', 'X-T1: a\r\nX-T2: b\r\n', 'bad trailer\r\n', 'X-Nul: a\0b\r\n', ' folded: x\r\n'] as const)
      f(`trailer:${JSON.stringify(v)}`)
      if (!/^X-(Trailer|T1)/.test(v)) f('trailer-bad')
      last += v
    }
    last += '\r\n'
    if (chance(0.12)) {
      const v = pick(['size-bare-lf', 'data-no-crlf', 'huge-size', 'no-last-chunk', 'size-not-hex', 'size-negative', 'size-space'] as const)
      f(`chunk-${v}`)
      if (v === 'size-bare-lf' && parts.length > 0) parts[0] = parts[0]!.replace('\r\n', '\n')
      else if (v === 'data-no-crlf' && parts.length > 0) parts[0] = parts[0]!.replace(/\r\n$/, 'XX')
      else if (v === 'huge-size') parts.unshift('fffffffffffffffff\r\n')
      else if (v === 'no-last-chunk') last = ''
      else if (v === 'size-not-hex') parts.unshift('zz\r\nab\r\n')
      else if (v === 'size-negative') parts.unshift('-1\r\n')
      else parts.unshift('2 \r\nab\r\n')
    }
    body = parts.join('') + last
  } else {
    f('until-close')
    body = payload
  }

  // 204 / 304 / HEAD with a declared body.
  if (status === 204 || status === 304) f(`status-${status}`)

  let head = `${statusLine}\r\n${fields.map((l) => `${l}\r\n`).join('')}\r\n`
  if (chance(0.08)) {
    const v = pick(['all-lf', 'one-lf', 'final-lf', 'bare-cr'] as const)
    f(`eol-${v}`)
    if (v === 'all-lf') head = head.replaceAll('\r\n', '\n')
    else if (v === 'one-lf') head = head.replace('\r\n', '\n')
    else if (v === 'final-lf') head = `${head.slice(0, -2)}\n`
    else head = head.replace('\r\n', '\r')
  }
  if (chance(0.1)) {
    const v = pick(['100', '103', '102', '101', '100x2'] as const)
    f(`1xx-${v}`)
    const info = {
      '100': 'HTTP/1.1 100 Continue\r\n\r\n',
      '103': 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n',
      '102': 'HTTP/1.1 102 Processing\r\n\r\n',
      '101': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n',
      '100x2': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n',
    }[v]
    head = info + head
    if (v === '101') f('1xx-no-final')
  }
  const bytes = Buffer.from(head + body, 'latin1')
  const nCuts = Math.floor(r() * 4)
  const cuts = [...new Set(Array.from({ length: nCuts }, () => 1 + Math.floor(r() * (bytes.length - 1))))].sort((a, b) => a - b)
  return { index, method, bytes, cuts, features }
}

function pieces(c: Case): Buffer[] {
  const bounds = [0, ...c.cuts, c.bytes.length]
  const out: Buffer[] = []
  for (let k = 0; k + 1 < bounds.length; k++) if (bounds[k]! < bounds[k + 1]!) out.push(c.bytes.subarray(bounds[k], bounds[k + 1]))
  return out
}

interface Outcome {
  /** complete: a whole response was delivered; refused: a parse error; truncated: the close came first. */
  kind: 'complete' | 'refused' | 'truncated'
  status?: number
  headers?: string[]
  body?: string
  code?: string
}

/** h1parse, fed the pieces as the pool feeds packets; complete as soon as the response is done. */
function viaH1parse(c: Case): Outcome {
  const p = new ResponseParser(http.maxHeaderSize)
  let status: number | undefined
  let headers: string[] | undefined
  let body = ''
  p.reset({ onInfo() {}, onHead: (s, raw) => ((status = s), (headers = raw)), onBody: (b) => (body += b.toString('latin1')) }, c.method === 'HEAD')
  try {
    for (const piece of pieces(c)) {
      p.feed(piece)
      if (p.done) break
    }
  } catch (e) {
    return { kind: 'refused', code: (e as { code?: string }).code }
  }
  if (p.done || p.eof()) return { kind: 'complete', status, headers, body }
  return { kind: 'truncated', status }
}

/**
 * llhttp through node:http's client against a raw server that writes the pieces and closes. A
 * parse error after the response completed is about bytes that follow it (an unsolicited next
 * message): the response itself was accepted, as the pool completes it and drops the connection.
 */
function viaLlhttp(port: number, c: Case): Promise<Outcome> {
  return new Promise((resolve) => {
    let out: Outcome | undefined
    let res: http.IncomingMessage | undefined
    let body = ''
    const settle = (o: Outcome): void => {
      out ??= o
    }
    let reqClosed = false
    let resClosed = false
    const maybeDone = (): void => {
      if (reqClosed && (res === undefined || resClosed)) {
        clearTimeout(guard)
        setImmediate(() => resolve(out ?? { kind: 'truncated', code: 'closed' }))
      }
    }
    const req = http.request({ host: '127.0.0.1', port, path: `/case/${c.index}`, method: c.method, agent: false, insecureHTTPParser: false })
    req.on('response', (r) => {
      res = r
      r.on('data', (b: Buffer) => (body += b.toString('latin1')))
      r.on('end', () => {
        if (r.complete) settle({ kind: 'complete', status: r.statusCode, headers: r.rawHeaders, body })
      })
      r.on('aborted', () => settle({ kind: 'truncated', status: r.statusCode }))
      r.on('error', () => settle({ kind: 'truncated', status: r.statusCode }))
      r.on('close', () => {
        resClosed = true
        maybeDone()
      })
    })
    req.on('error', (e: Error & { code?: string }) => {
      if (res?.complete === true) return
      settle(e.code?.startsWith('HPE_') === true ? { kind: 'refused', code: e.code } : { kind: 'truncated', code: e.code })
    })
    req.on('upgrade', (_res, socket) => {
      socket.destroy()
      settle({ kind: 'refused', code: 'UPGRADE' })
    })
    req.on('close', () => {
      reqClosed = true
      maybeDone()
    })
    const guard = setTimeout(() => {
      req.destroy()
      res?.destroy()
      setTimeout(() => resolve(out ?? { kind: 'truncated', code: 'guard' }), 10)
    }, 3000)
    req.end()
  })
}

const SEED = Number(process.env.GATEHOUSE_DIFF_SEED ?? 13013)
const COUNT = Number(process.env.GATEHOUSE_DIFF_CASES ?? 500)

describe('h1parse against llhttp (node:http client, strict), on generated responses', () => {
  const cases = new Map<number, Case>()
  let server: net.Server
  let port = 0
  before(async () => {
    server = net.createServer((s) => {
      s.on('error', () => {})
      let buf = ''
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1')
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const index = Number(/^[A-Z]+ \/case\/(\d+) /.exec(buf)?.[1])
        buf = ''
        const c = cases.get(index)
        if (c === undefined) return void s.destroy()
        // The pieces one by one, each after the previous one was handed to the kernel and a
        // tick passed, so llhttp mostly sees them as separate reads.
        const list = pieces(c)
        const next = (k: number): void => {
          if (k === list.length) return void s.end()
          s.write(list[k]!, () => setTimeout(() => next(k + 1), 0))
        }
        next(0)
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    port = (server.address() as AddressInfo).port
  })
  after(() => new Promise<void>((r) => server.close(() => r())))

  it(`${COUNT} cases (seed ${SEED}): every disagreement is a documented, stricter refusal by h1parse (or the documented leniency)`, async () => {
    const failures: string[] = []
    const stricter = new Map<string, number>()
    const tally = { agreeComplete: 0, agreeRefused: 0, stricter: 0, lenient: 0 }
    const all = Array.from({ length: COUNT }, (_, i) => generate(i, SEED))
    for (const c of all) cases.set(c.index, c)
    const describeCase = (c: Case, a: Outcome, b: Outcome): string =>
      `case ${c.index} [${c.features.join(' ')}] ${c.method} cuts=${JSON.stringify(c.cuts)}\n  bytes: ${JSON.stringify(c.bytes.toString('latin1').slice(0, 400))}\n  h1parse: ${JSON.stringify(a).slice(0, 300)}\n  llhttp:  ${JSON.stringify(b).slice(0, 300)}`
    // A few at a time: bounded time on a shared machine.
    const queue = [...all]
    const worker = async (): Promise<void> => {
      for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
        const a = viaH1parse(c)
        const b = await viaLlhttp(port, c)
        const aOk = a.kind === 'complete'
        const bOk = b.kind === 'complete'
        if (aOk && bOk) {
          tally.agreeComplete++
          if (a.status !== b.status || JSON.stringify(a.headers) !== JSON.stringify(b.headers) || a.body !== b.body) failures.push(`different responses: ${describeCase(c, a, b)}`)
        } else if (!aOk && !bOk) tally.agreeRefused++
        else if (aOk) {
          const why = c.features.filter((x) => x in LENIENT)
          const relayed = responseHeaders(a.headers ?? [], a.status === 204 || a.status === 304).list.filter((x, i) => i % 2 === 0 && x.toLowerCase() === 'content-length')
          if (why.length === 0) failures.push(`h1parse accepted what llhttp refused: ${describeCase(c, a, b)}`)
          else if (relayed.length > 1) failures.push(`a repeated Content-Length would be relayed: ${describeCase(c, a, b)}`)
          else tally.lenient++
        }
        else {
          // A documented feature of this case, and the refusal is the one that feature explains.
          const why = c.features.filter((x) => STRICTER[x]?.codes.includes(a.code ?? '') === true)
          if (why.length === 0) failures.push(`h1parse refused without a documented reason: ${describeCase(c, a, b)}`)
          else {
            tally.stricter++
            for (const w of why) stricter.set(w, (stricter.get(w) ?? 0) + 1)
          }
        }
      }
    }
    await Promise.all(Array.from({ length: 4 }, worker))
    // The generator must exercise both sides, or the comparison proves nothing.
    assert.ok(tally.agreeComplete > COUNT / 4, `only ${tally.agreeComplete} cases were accepted by both`)
    assert.ok(tally.agreeRefused > COUNT / 10, `only ${tally.agreeRefused} cases were refused by both`)
    assert.deepEqual(failures, [], `${failures.length} disagreement(s):\n${failures.slice(0, Number(process.env.GATEHOUSE_DIFF_SHOW ?? 15)).join('\n')}`)
    if (process.env.GATEHOUSE_DIFF_VERBOSE !== undefined) console.log(tally, Object.fromEntries(stricter))
  })
})
