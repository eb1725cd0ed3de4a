/**
 * Issue 6, failing dependencies: an upstream that refuses, resets mid-body, stalls inside its
 * headers, answers garbage or a smuggling-shaped response, or is SIGKILLed during a 100 MB
 * download; and an OIDC issuer that flaps between up, 500 and hanging. Every failure must map
 * to 502/504 (SPEC §7, §9) or an honest truncation, never a hang, a crash or a leaked socket.
 *
 * What forwarding.test.ts and oidc.test.ts / jwks-cache.test.ts already cover (refused then
 * back, /reset before headers, /hang → 504, a slow issuer at start, 100 unknown kids against a
 * healthy issuer) is not repeated here.
 */
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { after, before, describe, it } from 'node:test'
import { assertGotError, assertStillServes, guardedGet, type Got, type GuardedGetOptions } from '../helpers/guardedGet.ts'
import { oidcEnv, startIssuer, type TestIssuer } from '../helpers/issuer.ts'
import { startKillableUpstream, type KillableUpstream } from '../helpers/killableUpstream.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, waitReady, type TestProxy } from '../helpers/proxy.ts'
import { startRawUpstream, type RawAction, type RawUpstream } from '../helpers/rawUpstream.ts'
import { closedPort, startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'upstream-hardening-secret-key-2b7e'

const ENV = (url: string): Record<string, string> => ({
  GATEHOUSE_UPSTREAM_URL: url,
  GATEHOUSE_TLS_ENABLED: 'false',
  AUTHENTICATION_APIKEY_ENABLED: 'true',
  AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY,
  AUTHENTICATION_APIKEY_USERS: 'upstream-user',
})

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** GET through the proxy with this file's key; never throws, never waits longer than `guardMs`. */
const get = (p: TestProxy, path: string, opts: Omit<GuardedGetOptions, 'token'> = {}): Promise<Got> => guardedGet(p, path, { ...opts, token: KEY })
const assertError = assertGotError

/** Open file descriptors of this process (the proxy runs in-process). */
const fds = (): number => readdirSync('/proc/self/fd').length

// Raw responses -----------------------------------------------------------------------------------

const BIG = 100_000
const RAW: Record<string, RawAction> = {
  '/garbage': 'SSH-2.0-OpenSSH_9.6 this is not HTTP at all\r\n\r\n',
  '/garbage-binary': (s: Socket) => s.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a])),
  '/cl-te': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  '/te-cl': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
  '/cl-conflict': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!',
  '/cl-sign': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: +2\r\n\r\nok',
  '/status-4digits': 'HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok',
  '/status-missing': 'HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok',
  '/status-not-http': 'ICY 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/status-bad-version': 'HTTP/1.x 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/nul-in-header': 'HTTP/1.1 200 OK\r\nX-Evil: a\0b\r\nContent-Length: 2\r\n\r\nok',
  '/space-before-colon': 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok',
  // Stalls inside the head: only the headers timeout can end these.
  '/partial-status': (s: Socket) => s.write('HTTP/1.1 20'),
  '/partial-headers': (s: Socket) => s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Len'),
  // Keeps "answering" with 1xx forever and never sends a final status.
  '/informational-flood': (s: Socket) => {
    const t = setInterval(() => (s.writable ? s.write('HTTP/1.1 102 Processing\r\n\r\n') : clearInterval(t)), 100)
    s.once('close', () => clearInterval(t))
  },
  // Cut mid-body, cleanly (FIN) or with a reset (RST).
  '/cut-cl': (s: Socket) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BIG}\r\n\r\n${'x'.repeat(BIG / 10)}`),
  '/cut-chunked': (s: Socket) => s.end(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n${'400\r\n' + 'y'.repeat(1024) + '\r\n'}${'400\r\n' + 'y'.repeat(1024) + '\r\n'}`),
  '/reset-cl': (s: Socket) => s.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BIG}\r\n\r\n${'z'.repeat(BIG / 10)}`, () => s.resetAndDestroy()),
  // Response queue poisoning: a second, unsolicited response right after the first.
  '/poison': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\npoisoned',
}

describe('hardening: failing upstreams', () => {
  before(() => {
    usedSecrets.add(KEY)
  })

  describe('upstream refuses connections', () => {
    let px: TestProxy

    before(async () => {
      px = await startProxy({ env: ENV(`http://127.0.0.1:${await closedPort()}`), yaml: 'upstream:\n  timeouts:\n    connect: 1s\n' })
    })
    after(async () => {
      await px?.stop()
      assertNoSecretsInLogs(px?.logs ?? [])
    })

    it('20 concurrent requests to a closed port: each is 502 ERR_UPSTREAM_UNAVAILABLE within 2 s, and no socket is left behind', async () => {
      await get(px, '/warm-up')
      await sleep(200)
      const before = fds()
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => get(px, `/refused-${i}`)))
      for (const r of rs) {
        assertError(r, 502, 'ERR_UPSTREAM_UNAVAILABLE')
        assert.ok(r.ms < 2000, `answered after ${Math.round(r.ms)} ms`)
      }
      let now = fds()
      for (let i = 0; i < 50 && now > before + 3; i++) {
        await sleep(100)
        now = fds()
      }
      assert.ok(now <= before + 3, `open file descriptors: ${before} before, ${now} after`)
    })
  })

  describe('a misbehaving upstream (raw TCP)', () => {
    let raw: RawUpstream
    let px: TestProxy

    before(async () => {
      raw = await startRawUpstream((path) => RAW[path])
      px = await startProxy({ env: ENV(raw.url), yaml: 'upstream:\n  timeouts:\n    headers: 500ms\n    body: 2s\n' })
    })
    after(async () => {
      await px?.stop()
      await raw?.close()
      assertNoSecretsInLogs(px?.logs ?? [])
    })

    const good = (): Promise<void> => assertStillServes(px, KEY)

    for (const [path, what] of [
      ['/garbage', 'a text banner that is not HTTP'],
      ['/garbage-binary', 'binary bytes (a TLS ClientHello) and a close'],
    ] as const) {
      it(`answers garbage (${what}) → 502 ERR_UPSTREAM_BAD_RESPONSE, then serves the next request`, async () => {
        raw.reset()
        const r = await get(px, path)
        assertError(r, 502, 'ERR_UPSTREAM_BAD_RESPONSE')
        assert.equal(raw.heads.length, 1, 'the request did reach the upstream')
        await good()
      })
    }

    for (const [path, what] of [
      ['/cl-te', 'both Content-Length and Transfer-Encoding'],
      ['/te-cl', 'Transfer-Encoding before Content-Length'],
      ['/cl-conflict', 'two different Content-Length headers'],
      ['/cl-sign', 'Content-Length: +2'],
      ['/status-4digits', 'a four-digit status code'],
      ['/status-missing', 'no status code'],
      ['/status-not-http', 'a status line that is not HTTP (ICY)'],
      ['/status-bad-version', 'an invalid HTTP version'],
      ['/nul-in-header', 'NUL in a header value'],
      ['/space-before-colon', 'whitespace before a header colon'],
    ] as const) {
      it(`response smuggling shape: ${what} → 502 ERR_UPSTREAM_BAD_RESPONSE, nothing relayed`, async () => {
        const r = await get(px, path)
        assertError(r, 502, 'ERR_UPSTREAM_BAD_RESPONSE')
        await good()
      })
    }

    for (const path of ['/partial-status', '/partial-headers', '/informational-flood']) {
      it(`stalls in the middle of its head (${path}) → 504 ERR_UPSTREAM_TIMEOUT after upstream.timeouts.headers (500 ms)`, async () => {
        const r = await get(px, path)
        assertError(r, 504, 'ERR_UPSTREAM_TIMEOUT')
        assert.ok(r.ms >= 400 && r.ms < 2500, `answered after ${Math.round(r.ms)} ms`)
        await good()
      })
    }

    for (const [path, what] of [
      ['/cut-cl', 'closes (FIN) after a tenth of a declared Content-Length'],
      ['/cut-chunked', 'closes (FIN) in the middle of a chunked body'],
      ['/reset-cl', 'resets (RST) after a tenth of a declared Content-Length'],
    ] as const) {
      it(`${what}: the client sees a truncated transfer (not complete, not a hang); the proxy keeps serving`, async () => {
        const r = await get(px, path, { guardMs: 5000 })
        assert.equal(r.hung, false, 'the client was left hanging')
        assert.equal(r.status, 200, 'headers had been relayed before the cut')
        assert.equal(r.complete, false, 'a truncated body must not look complete to the client')
        assert.ok(r.bytes < BIG, `received ${r.bytes} bytes`)
        assert.ok(r.ms < 3000, `ended after ${Math.round(r.ms)} ms`)
        await good()
      })
    }

    it('…the same through the recording upstream (/reset-mid-body): truncated, then 200', async () => {
      const up = await startUpstream()
      const px2 = await startProxy({ env: ENV(up.url) })
      try {
        const r = await get(px2, `/reset-mid-body/${BIG}`, { guardMs: 5000 })
        assert.equal(r.hung, false)
        assert.equal(r.status, 200)
        assert.equal(r.complete, false)
        assert.ok(r.bytes < BIG)
        const ok = await get(px2, '/after')
        assert.equal(ok.status, 200)
      } finally {
        await px2.stop()
        await up.close()
        assertNoSecretsInLogs(px2.logs)
      }
    })

    it('an unsolicited second response (response queue poisoning) never reaches the next client', async () => {
      raw.reset()
      const first = await get(px, '/poison')
      assert.equal(first.status, 200)
      assert.equal(first.text, 'ok')
      await sleep(50)
      const results = await Promise.all([get(px, '/next-1'), get(px, '/next-2')])
      for (const r of results) {
        assert.notEqual(r.text, 'poisoned', 'a client received the smuggled response')
        assert.equal(r.status, 200)
        assert.equal(r.text, 'ok')
      }
      assert.deepEqual(
        raw.heads.map((h) => h.split(' ')[1]).sort(),
        ['/next-1', '/next-2', '/poison'],
        'each client’s request was sent upstream and answered by its own response',
      )
    })

    it('a batch of failing requests leaves no socket behind (file descriptors return to the baseline)', async () => {
      await good()
      await sleep(300)
      const before = fds()
      const paths = ['/garbage', '/garbage-binary', '/cl-te', '/cl-conflict', '/status-4digits', '/partial-status', '/cut-cl', '/cut-chunked', '/reset-cl', '/nul-in-header']
      for (let round = 0; round < 3; round++) {
        const rs = await Promise.all(paths.map((p) => get(px, p, { guardMs: 5000 })))
        for (const r of rs) assert.equal(r.hung, false)
      }
      await good()
      let now = fds()
      for (let i = 0; i < 50 && now > before + 3; i++) {
        await sleep(100)
        now = fds()
      }
      assert.ok(now <= before + 3, `open file descriptors: ${before} before, ${now} after (raw upstream holds ${raw.openSockets()} sockets)`)
    })
  })

  describe('upstream SIGKILLed during a 100 MB download', () => {
    let ku: KillableUpstream
    let px: TestProxy

    before(async () => {
      ku = await startKillableUpstream()
      px = await startProxy({ env: ENV(ku.url), yaml: 'upstream:\n  timeouts:\n    connect: 1s\n' })
    })
    after(async () => {
      await ku?.kill()
      await px?.stop()
      assertNoSecretsInLogs(px?.logs ?? [])
    })

    it('the client sees a truncated transfer soon after the kill (not a hang), and the next request gets 502', async () => {
      const TOTAL = 100 * 1024 * 1024
      let killedAt: number | undefined
      const r = await get(px, `/download/${TOTAL}`, {
        guardMs: 20_000,
        onData: (n) => {
          if (killedAt === undefined && n >= 8 * 1024 * 1024) {
            killedAt = performance.now()
            void ku.kill()
          }
        },
      })
      const endedAt = performance.now()
      assert.ok(killedAt !== undefined, `the download never reached 8 MiB (status ${r.status}, ${r.bytes} bytes)`)
      assert.equal(r.hung, false, 'the client was left hanging')
      assert.equal(r.status, 200)
      assert.equal(r.complete, false, 'a truncated download must not look complete')
      assert.ok(r.bytes < TOTAL, `received ${r.bytes} of ${TOTAL} bytes`)
      assert.ok(endedAt - killedAt < 5000, `the response ended ${Math.round(endedAt - killedAt)} ms after the kill`)
      assert.equal(await ku.exited, 'SIGKILL')
      const next = await get(px, '/after-kill')
      assertError(next, 502, 'ERR_UPSTREAM_UNAVAILABLE')
    })
  })

  describe('issuer flapping (up / 500 / hanging) with unknown kids', () => {
    let issuer: TestIssuer
    let up: RecordingUpstream

    const env = (): Record<string, string> => oidcEnv(issuer, up, { GATEHOUSE_TLS_ENABLED: 'false' })
    const YAML = 'authentication:\n  oidc:\n    jwks:\n      cooldown: 1s\n      fetchTimeout: 1s\n'

    const ready = (px: TestProxy): Promise<void> => waitReady(px, 5000, 'the proxy did not load the issuer keys')

    before(async () => {
      issuer = await startIssuer()
      up = await startUpstream()
    })
    after(async () => {
      await up?.close()
      await issuer?.close()
    })

    it('requests with known kids stay fast and unknown kids are answered within the fetch timeout; JWKS fetches stay bounded by the cooldown', async () => {
      const px = await startProxy({ env: env(), yaml: YAML })
      try {
        await ready(px)
        await sleep(1100) // past the cooldown of the start-up fetch
        // At most 14 unknown kids: the per-address failure throttle (if on) allows 20 failures.
        const unknown = await Promise.all(Array.from({ length: 14 }, (_, i) => issuer.attacks.signWithUnpublishedKey({ email: `u${i}@x` }, `flap-${i}-${Math.random()}`)))
        const known = await Promise.all(Array.from({ length: 28 }, (_, i) => issuer.sign({ email: `k${i}@x` })))
        for (const t of [...unknown, ...known]) usedSecrets.add(t)
        issuer.resetHits()
        up.reset()
        const phases: ((i: TestIssuer) => void)[] = [
          (i) => i.resetFaults(),
          (i) => {
            i.resetFaults()
            i.faults.status500 = true
          },
          (i) => {
            i.resetFaults()
            i.faults.slowMs = 5000
          },
        ]
        const results: { kind: 'known' | 'unknown'; status: number; ms: number }[] = []
        const pending: Promise<void>[] = []
        const shoot = (kind: 'known' | 'unknown', token: string): void => {
          const t0 = performance.now()
          pending.push(
            px.request('/flap', { token }).then((r) => {
              results.push({ kind, status: r.status, ms: performance.now() - t0 })
            }),
          )
        }
        const t0 = performance.now()
        for (let tick = 0; tick < 28; tick++) {
          // 200 ms ticks; the issuer changes state every 3 ticks: up → 500 → hanging → up …
          if (tick % 3 === 0) (phases[(tick / 3) % phases.length] as (i: TestIssuer) => void)(issuer)
          shoot('known', known[tick] as string)
          if (tick % 2 === 0) shoot('unknown', unknown[tick / 2] as string)
          await sleep(200)
        }
        await Promise.all(pending)
        const elapsed = (performance.now() - t0) / 1000
        issuer.resetFaults()

        const unk = results.filter((r) => r.kind === 'unknown')
        const kn = results.filter((r) => r.kind === 'known')
        assert.equal(unk.length, 14)
        assert.equal(kn.length, 28)
        for (const r of unk) {
          assert.equal(r.status, 401, 'an unknown kid is 401 while the last good keys are usable')
          assert.ok(r.ms < 2000, `an unknown-kid request waited ${Math.round(r.ms)} ms (fetch timeout 1 s)`)
        }
        for (const r of kn) {
          assert.equal(r.status, 200)
          assert.ok(r.ms < 800, `a known-kid request waited ${Math.round(r.ms)} ms (it must not wait on a refetch)`)
        }
        // On demand: at most one fetch per cooldown (1 s); plus background retries with backoff.
        const bound = Math.ceil(elapsed) + 4
        assert.ok(issuer.hits.discovery <= bound, `${issuer.hits.discovery} discovery fetches in ${elapsed.toFixed(1)} s (bound ${bound})`)
        assert.ok(issuer.hits.jwks <= bound, `${issuer.hits.jwks} JWKS fetches in ${elapsed.toFixed(1)} s (bound ${bound})`)
        assert.ok(issuer.hits.discovery >= 2, 'unknown kids did trigger refetches')
        assert.equal(up.requests.length, 28, 'exactly the known-kid requests reached the upstream')
      } finally {
        issuer.resetFaults()
        await px.stop()
        assertNoSecretsInLogs(px.logs)
      }
    })

    it('an issuer slow on both discovery and JWKS (each just under the fetch timeout): an unknown-kid request still waits at most ~the fetch timeout in total', async () => {
      const px = await startProxy({ env: env(), yaml: YAML })
      try {
        await ready(px)
        await sleep(1100)
        const token = await issuer.attacks.signWithUnpublishedKey({ email: 'slow@x' }, `slow-${Math.random()}`)
        usedSecrets.add(token)
        issuer.resetHits()
        issuer.faults.slowMs = 800
        const t0 = performance.now()
        const r = await px.request('/slow-issuer', { token })
        const ms = performance.now() - t0
        assert.equal(r.status, 401)
        assert.ok(issuer.hits.discovery + issuer.hits.jwks >= 1, 'the unknown kid triggered a refetch')
        assert.ok(ms < 1400, `the request waited ${Math.round(ms)} ms; fetchTimeout is 1 s (discovery and JWKS each took 0.8 s)`)
      } finally {
        issuer.resetFaults()
        await px.stop()
        assertNoSecretsInLogs(px.logs)
      }
    })
  })
})
