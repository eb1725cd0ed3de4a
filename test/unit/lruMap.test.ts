import assert from 'node:assert/strict'
import { test } from 'node:test'
import { LruMap } from '../../src/lruMap.ts'

test('LruMap evicts the least recently used entry, and a get counts as a use', () => {
  const m = new LruMap<string, number>(2)
  m.set('a', 1).set('b', 2)
  assert.equal(m.get('a'), 1) // a is now newer than b
  m.set('c', 3)
  assert.equal(m.has('b'), false)
  assert.deepEqual([m.get('a'), m.get('c'), m.size], [1, 3, 2])
  m.set('c', 4) // overwriting is a use, not a second entry
  m.set('d', 5)
  assert.equal(m.has('a'), false)
  assert.deepEqual([m.get('c'), m.get('d'), m.size], [4, 5, 2])
  assert.equal(m.delete('c'), true)
  assert.equal(m.size, 1)
})

test('LruMap refuses a size that is not a positive integer', () => {
  assert.throws(() => new LruMap(0), TypeError)
  assert.throws(() => new LruMap(1.5), TypeError)
})
