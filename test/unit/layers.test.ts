/**
 * Every import points down (STYLE.md, "one rule for the house"). Each folder of `src/` has a
 * floor; a module may import its own folder or any folder on a lower floor, never a higher one
 * and never a sibling on the same floor. Type-only imports count too: a type that must be
 * shared belongs to the lower floor.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'

const SRC = path.resolve(import.meta.dirname, '../../src')

// Bottom first. A folder not listed here fails the test, so a new room must be placed.
const FLOORS: readonly (readonly string[])[] = [
  ['errors.ts', 'logWriter.ts', 'lazyModules.ts', 'lruMap.ts'], // lazyModules: third-party clients required on first use; lruMap: a growing LRU Map
  ['log.ts'],
  ['metrics'], // counters the pipeline, auth, issuer and store add to; prom-client reads them at scrape time (docs/metrics.md)
  ['http'], // shared HTTP pieces: target parsing, header policy, error responses, hop-by-hop list
  ['store'],
  ['config'],
  ['session'], // console and browser sessions: the model, cookies, CSRF, return paths (store below, issuer above)
  ['tls', 'upstream'],
  ['authz'],
  ['auth'],
  ['directory'], // LDAP / Active Directory users: a source of principals for the issuer (config, errors below)
  ['issuer'],
  ['browser'], // browser sign-in on the data listener: /oauth2/*, OIDC code flow, session authentication
  ['pipeline'],
  ['console'], // the web console pages under /ui/ (the admin listener routes to them)
  ['admin'],
  ['compose.ts'], // the composition root: builds the runtime from the configuration
  ['server'],
  ['cli'],
  ['bin', 'index.ts'],
]

function roomOf(rel: string): string {
  return rel.split('/')[0] as string
}

function floorOf(room: string): number {
  const i = FLOORS.findIndex((f) => f.includes(room))
  if (i < 0) throw new Error(`src/${room} has no floor in test/unit/layers.test.ts: place the new room`)
  return i
}

function sources(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) out.push(...sources(p))
    else if (name.endsWith('.ts')) out.push(p)
  }
  return out
}

/** Relative import specifiers of a module (static, dynamic and re-exports). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"\n;]*?(?:from\s*)?['"](\.[^'"]+)['"]/g)) out.push(m[1] as string)
  for (const m of text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)) out.push(m[1] as string)
  return out
}

test('every import in src/ points to its own room or a lower floor', () => {
  const wrong: string[] = []
  for (const file of sources(SRC)) {
    const rel = path.relative(SRC, file)
    const from = roomOf(rel)
    for (const spec of importsOf(file)) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), spec))
      const to = roomOf(target)
      if (to === from) continue
      if (floorOf(to) >= floorOf(from)) wrong.push(`${rel} imports ${target} (floor ${floorOf(from)} → ${floorOf(to)})`)
    }
  }
  assert.deepEqual(wrong, [])
})

test('the import scanner sees the imports it must judge', () => {
  // A scanner that finds nothing would make the test above pass vacuously.
  const found = importsOf(path.join(SRC, 'compose.ts'))
  assert.ok(found.includes('./auth/authenticate.ts'), found.join(', '))
  assert.ok(found.includes('./pipeline/runtime.ts'), found.join(', '))
})
