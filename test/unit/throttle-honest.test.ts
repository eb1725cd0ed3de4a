/**
 * The failure throttle's table with a fake clock: a block survives the failure window rolling
 * over, refusals during a block keep it going, proven API keys are bounded per address and
 * forgotten when the block ends, and the X-Forwarded-For warning is given once.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FailureThrottle } from '../../src/auth/throttle.ts'
import { logValue } from '../../src/auth/oidc/logValue.ts'

const make = (o: { maxProvenPerAddress?: number } = {}): { t: FailureThrottle; clock: { now: number } } => {
  const clock = { now: 1_000_000 }
  return { t: new FailureThrottle({ maxFailures: 3, windowMs: 10_000, blockMs: 30_000, maxAddresses: 100, now: () => clock.now, ...o }), clock }
}

describe('FailureThrottle for honest clients at a shared address', () => {
  it('a block outlives the failure window; failures during it extend it', () => {
    const { t, clock } = make()
    for (let i = 0; i < 3; i++) t.fail('a')
    assert.ok(t.blocked('a') !== undefined)
    clock.now += 12_000 // past the window, inside the block
    t.fail('a')
    assert.ok(t.blocked('a') !== undefined, 'a new window does not lift the block')
    t.fail('a')
    t.fail('a') // three in the new window: the block now ends 30 s from here
    clock.now += 25_000 // 37 s after the first block began: it would have ended by now
    assert.equal(t.blocked('a')?.headers?.['retry-after'], '5')
  })

  it('proven digests are per address, bounded, and dropped when the block ends', () => {
    const { t, clock } = make({ maxProvenPerAddress: 2 })
    t.prove('a', 'd1')
    t.prove('a', 'd2')
    t.prove('a', 'd3') // the oldest goes
    assert.equal(t.isProven('a', 'd1'), false)
    assert.equal(t.isProven('a', 'd3'), true)
    assert.equal(t.isProven('b', 'd3'), false, 'per address')
    for (let i = 0; i < 3; i++) t.fail('a')
    assert.ok(t.blocked('a') !== undefined)
    assert.equal(t.isProven('a', 'd2'), true, 'kept through the block')
    clock.now += 30_000
    assert.equal(t.blocked('a'), undefined)
    assert.equal(t.isProven('a', 'd2'), false, 'forgotten with the block')
  })

  it('the untrusted X-Forwarded-For warning is given once', () => {
    const { t } = make()
    assert.equal(t.untrustedForwardWarned, false)
    assert.equal(t.firstUntrustedForward(), true)
    assert.equal(t.firstUntrustedForward(), false)
    assert.equal(t.untrustedForwardWarned, true)
  })
})

describe('logValue', () => {
  it('bounds, escapes and never serialises non-strings whole', () => {
    assert.equal(logValue('abc'), '"abc"')
    assert.equal(logValue(`${'x'.repeat(70)}`), `"${'x'.repeat(64)}"…(+6 chars)`)
    assert.equal(logValue('a\u0000\u001b\u009b\u2028\u202eb'), '"a\\u0000\\u001b\\u009b\\u2028\\u202eb"')
    assert.equal(logValue(`${'x'.repeat(63)}😀`), `"${'x'.repeat(63)}"…(+2 chars)`, 'no half surrogate pair')
    assert.equal(logValue({ a: 'secret' }), '<object>')
    assert.equal(logValue(['a', 'b']), '<array of 2>')
    assert.equal(logValue(null), 'null')
  })
})
