import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addressKey, FailureThrottle } from '../../src/auth/throttle.ts'
import { loadConfig } from '../../src/config/load.ts'
import { GatehouseError } from '../../src/errors.ts'
import { planReload } from '../../src/server/reload.ts'

describe('FailureThrottle', () => {
  const make = (): { t: FailureThrottle; clock: { now: number } } => {
    const clock = { now: 1_000_000 }
    return { t: new FailureThrottle({ maxFailures: 3, windowMs: 10_000, blockMs: 5_000, maxAddresses: 100, now: () => clock.now }), clock }
  }

  it('blocks at maxFailures within the window, with Retry-After in whole seconds', () => {
    const { t, clock } = make()
    for (let i = 0; i < 2; i++) t.fail('10.0.0.1')
    t.check('10.0.0.1')
    t.fail('10.0.0.1')
    clock.now += 1_200
    assert.throws(
      () => t.check('10.0.0.1'),
      (e: unknown) => e instanceof GatehouseError && e.code === 'ERR_TOO_MANY_FAILURES' && e.status === 429 && e.headers?.['retry-after'] === '4',
    )
    t.check('10.0.0.2')
  })

  it('failures spread over more than the window do not block', () => {
    const { t, clock } = make()
    t.fail('a')
    t.fail('a')
    clock.now += 10_001
    t.fail('a')
    t.check('a')
  })

  it('the block ends after blockMs and the count starts afresh', () => {
    const { t, clock } = make()
    for (let i = 0; i < 3; i++) t.fail('a')
    assert.throws(() => t.check('a'))
    clock.now += 5_000
    t.check('a')
    t.fail('a')
    t.check('a')
  })

  it('memory is bounded by maxAddresses', () => {
    const { t } = make()
    for (let i = 0; i < 1000; i++) t.fail(`10.0.${i >> 8}.${i & 255}`)
    assert.equal(t.size, 100)
  })
})

describe('addressKey', () => {
  it('keeps IPv4 and unwraps IPv4-mapped IPv6', () => {
    assert.equal(addressKey('192.0.2.7'), '192.0.2.7')
    assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7')
  })
  it('groups IPv6 by /64, whatever the spelling', () => {
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
    assert.equal(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64')
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
    assert.notEqual(addressKey('2001:db8:1:3::1'), addressKey('2001:db8:1:2::1'))
    assert.equal(addressKey('::1'), '0:0:0:0::/64')
  })
})

describe('planReload', () => {
  const load = (env: Record<string, string>) => {
    const r = loadConfig({ env })
    assert.equal(r.problems.length, 0, JSON.stringify(r.problems))
    return r.config as NonNullable<typeof r.config>
  }

  it('applies ordinary keys and keeps restart-only keys at their running value', () => {
    const a = load({ GATEHOUSE_PORT: '8443', GATEHOUSE_UPSTREAM_URL: 'http://a:1' })
    const b = load({ GATEHOUSE_PORT: '9443', GATEHOUSE_UPSTREAM_URL: 'http://b:2' })
    const p = planReload(a, b)
    assert.deepEqual(p.changed, ['upstream.url'])
    assert.deepEqual(p.restartRequired, ['listen.port'])
    assert.equal(p.config.listen.port, 8443)
    assert.equal(p.config.upstream.url, 'http://b:2')
    assert.ok(Object.isFrozen(p.config.upstream))
  })

  it('nothing changed: empty lists', () => {
    const a = load({})
    const p = planReload(a, load({}))
    assert.deepEqual([p.changed, p.restartRequired], [[], []])
  })
})
