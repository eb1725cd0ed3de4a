/**
 * The documents describe the product as it is: no promises of what "a later issue" brings and no
 * issue numbers, which mean nothing to a user (a new user found the README and the manifests
 * still saying HTTP/2 and hardening were coming after they had shipped).
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'

const ROOT = path.resolve(import.meta.dirname, '../..')

function files(dir: string, keep: (p: string) => boolean): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) out.push(...files(p, keep))
    else if (keep(p)) out.push(p)
  }
  return out
}

// Phrases that describe the project's plan instead of the product.
const STALE = [/\bissue\s*#?\d+/i, /\(issue\b/i, /\b(?:a |the )?(?:later|next) issues?\b/i, /\bonce [^.\n]{0,40}\blands\b/i, /\barrives? with\b/i, /\blater the local users\b/i, /\(later\)/i]

function documents(): string[] {
  return [
    path.join(ROOT, 'README.md'),
    path.join(ROOT, 'Dockerfile'),
    path.join(ROOT, 'proxy.yaml'),
    ...files(path.join(ROOT, 'docs'), (p) => p.endsWith('.md')),
    ...files(path.join(ROOT, 'deploy'), () => true),
    ...files(path.join(ROOT, 'src'), (p) => p.endsWith('.ts')),
  ]
}

test('README, docs, deploy manifests, Dockerfile and sources name no issue and promise nothing for later', () => {
  const found: string[] = []
  for (const f of documents()) {
    const lines = readFileSync(f, 'utf8').split('\n')
    lines.forEach((line, i) => {
      for (const re of STALE) if (re.test(line)) found.push(`${path.relative(ROOT, f)}:${i + 1}: ${line.trim()}`)
    })
  }
  assert.deepEqual(found, [])
})

test('the scan reads the documents it claims to read', () => {
  const list = documents().map((p) => path.relative(ROOT, p))
  for (const must of ['README.md', 'Dockerfile', 'docs/configuration.md', 'deploy/kubernetes/standalone.yaml', 'src/cli/usage.ts']) assert.ok(list.includes(must), must)
  assert.ok(STALE[0]?.test('until the shared state store (issue 4) exists'))
})
