/**
 * The metrics' bookkeeping without sockets (src/metrics/): every label combination is written
 * back as the labels it was counted under, decisions map from reason codes as docs/metrics.md
 * says, the store wrapper times operations and passes everything else through, and the list of
 * timed store operations is the store's whole interface.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { DECISIONS, grpcStatusClass, Metrics, PROTOCOL, PROTOCOLS } from '../../src/metrics/metrics.ts'
import { instrumentStore } from '../../src/metrics/store.ts'
import { FileStore } from '../../src/store/fileStore.ts'
import { IpcStore } from '../../src/store/ipcStore.ts'
import { STATE_STORE_OPERATIONS } from '../../src/store/store.ts'

function samples(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) if (line !== '' && !line.startsWith('#')) out.set(line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)))
  return out
}

const fresh = (): Metrics => new Metrics({ storeBackend: 'file', storeOps: STATE_STORE_OPERATIONS, defaultMetrics: false })

test('every protocol, status class, method and profile comes back as the labels it was counted under', async () => {
  const m = fresh()
  const statuses = [101, 204, 302, 404, 503, 0]
  const classes = ['1xx', '2xx', '3xx', '4xx', '5xx', 'none']
  const methods = ['apikey', 'oidc', 'local', 'anonymous', undefined, 'something-else']
  const profiles = ['generic', 'weaviate', 'qdrant']
  for (const p of PROTOCOLS) for (const s of statuses) for (const a of methods) for (const pr of profiles) m.request(PROTOCOL[p], s, a, undefined, true, false, pr, 0.01, undefined)
  const got = samples(await m.text())
  for (const p of PROTOCOLS)
    statuses.forEach((_, si) =>
      methods.forEach((a) =>
        profiles.forEach((pr) => {
          const auth = a === undefined ? 'none' : a === 'something-else' ? 'other' : a
          assert.equal(got.get(`gatehouse_requests_total{protocol="${p}",status_class="${classes[si]}",auth_method="${auth}",decision="allowed",profile="${pr}"}`), 1, `${p} ${classes[si]} ${auth} ${pr}`)
        }),
      ),
    )
  assert.equal(got.get('gatehouse_request_duration_seconds_count{protocol="grpc"}'), statuses.length * methods.length * profiles.length)
})

test('decisions and authentication failures from the reason code', async () => {
  const m = fresh()
  const cases: [string | undefined, boolean, boolean, string][] = [
    [undefined, true, false, 'allowed'],
    ['ERR_UPSTREAM_TIMEOUT', true, false, 'allowed'],
    ['ERR_INVALID_API_KEY', false, false, 'unauthenticated'],
    ['ERR_FORBIDDEN', true, false, 'forbidden'],
    ['ERR_PASSWORD_CHANGE_REQUIRED', true, false, 'forbidden'],
    ['ERR_TOO_MANY_FAILURES', false, false, 'throttled'],
    ['ERR_BAD_PATH', false, false, 'invalid'],
    ['ERR_IDP_UNAVAILABLE', false, false, 'error'],
    [undefined, false, true, 'own'],
    [undefined, false, false, 'none'],
  ]
  for (const [reason, authorized, own] of cases) m.request(PROTOCOL.http1, 400, undefined, reason, authorized, own, 'generic', 0, undefined)
  const got = samples(await m.text())
  for (const d of DECISIONS) {
    const want = cases.filter((c) => c[3] === d).length
    assert.equal(got.get(`gatehouse_requests_total{protocol="http1",status_class="4xx",auth_method="none",decision="${d}",profile="generic"}`), want === 0 ? undefined : want, d)
  }
  assert.equal(got.get('gatehouse_auth_failures_total{reason="ERR_INVALID_API_KEY"}'), 1)
  assert.equal(got.get('gatehouse_throttle_refusals_total{throttle="credentials"}'), 1)
  // Only 401 codes are authentication failures: a 403 is not one.
  assert.equal([...got.keys()].some((k) => k.includes('ERR_FORBIDDEN')), false)
})

test('gRPC statuses map onto HTTP status classes as a gateway maps them', () => {
  assert.equal(grpcStatusClass(0), 1) // OK → 2xx
  for (const s of [1, 3, 5, 6, 7, 8, 9, 10, 11, 16]) assert.equal(grpcStatusClass(s), 3, String(s))
  for (const s of [2, 4, 12, 13, 14, 15]) assert.equal(grpcStatusClass(s), 4, String(s))
  assert.equal(grpcStatusClass(undefined), 5)
})

test('logins, lockouts and revocations from audit events; reasons never become labels', async () => {
  const m = fresh()
  m.audit('login', 'success', undefined, undefined)
  m.audit('login', 'failure', 'ERR_LOGIN_FAILED', { via: 'console' })
  m.audit('browser.sign_in', 'failure', 'csrf:origin', { method: 'local' })
  m.audit('browser.sign_in', 'failure', 'ERR_STORE_UNAVAILABLE', { method: 'oidc' })
  m.audit('account.locked', 'success', undefined, undefined)
  m.audit('refresh_token.reused', 'success', undefined, undefined)
  m.audit('password.changed', 'failure', 'ERR_WEAK_PASSWORD', undefined)
  const text = await m.text()
  const got = samples(text)
  assert.equal(got.get('gatehouse_logins_total{via="api",outcome="success"}'), 1)
  assert.equal(got.get('gatehouse_logins_total{via="console",outcome="wrong_password"}'), 1)
  assert.equal(got.get('gatehouse_logins_total{via="browser_local",outcome="invalid"}'), 1)
  assert.equal(got.get('gatehouse_logins_total{via="browser_oidc",outcome="error"}'), 1)
  assert.equal(got.get('gatehouse_lockouts_total'), 1)
  assert.equal(got.get('gatehouse_revocations_total{cause="refresh_reuse"}'), 1)
  assert.equal(got.get('gatehouse_revocations_total{cause="password_change"}'), 0)
  assert.ok(!text.includes('csrf:origin'))
})

test('the store wrapper times the named operations, counts failures, and passes the rest through', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-metrics-store-'))
  try {
    const m = fresh()
    const store = instrumentStore(new FileStore(dir), STATE_STORE_OPERATIONS, m)
    assert.equal(await store.getUser('nobody'), undefined)
    assert.equal(store.generationSync('nobody'), undefined) // not an operation: passed through, bound
    await assert.rejects(store.createUser(undefined as never))
    const got = samples(await m.text())
    assert.equal(got.get('gatehouse_store_operations_total{operation="getUser",backend="file"}'), 1)
    assert.equal(got.get('gatehouse_store_errors_total{operation="createUser",backend="file"}'), 1)
    assert.equal(got.get('gatehouse_store_operation_duration_seconds_count{operation="getUser",backend="file"}'), 1)
    assert.equal([...got.keys()].some((k) => k.includes('generationSync')), false)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the timed operations are the whole store interface (the worker IPC store implements exactly it)', () => {
  // IpcStore forwards every IssuerStore operation and has nothing else but the sync view.
  const own = Object.getOwnPropertyNames(IpcStore.prototype).filter((n) => n !== 'constructor' && n !== 'onSettingChange' && !n.endsWith('Sync'))
  assert.deepEqual([...own].sort(), [...STATE_STORE_OPERATIONS].sort())
  for (const op of STATE_STORE_OPERATIONS) assert.equal(typeof (FileStore.prototype as unknown as Record<string, unknown>)[op], 'function', op)
})
