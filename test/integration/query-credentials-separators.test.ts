/**
 * Credentials in the query string hidden from a `&`-only reader never reach the upstream: after
 * or before a `;` (Rack 2 and Python before 3.9.2 split on `;` too, and would read
 * `a=1;access_token=S` as a credential), and in the PHP/Rack array form `access_token[]=S`
 * (raw or `%5B%5D`). The segment carrying the name is dropped; every other byte of the query
 * reaches the upstream in order. Neither shape is ever accepted as a credential when query tokens
 * are on: only `access_token` exactly, as before (docs/security.md).
 */
import assert from 'node:assert/strict'
import https from 'node:https'
import { after, before, describe, it } from 'node:test'
import { h2close, h2connect, h2request } from '../helpers/h2.ts'
import { assertNoSecretsInLogs, startProxy, usedSecrets, type TestProxy } from '../helpers/proxy.ts'
import { startUpstream, type RecordingUpstream } from '../helpers/upstream.ts'

const KEY = 'qsep-cred-key-5c1e7b20'
const S = 'qsep-secret-9f3a61d4'
const KEY_ENV = { AUTHENTICATION_APIKEY_ENABLED: 'true', AUTHENTICATION_APIKEY_ALLOWED_KEYS: KEY, AUTHENTICATION_APIKEY_USERS: 'q-user' }

/** [query sent, query the upstream must see] — bytes a re-encoder would change are in the rest. */
const SHAPES: readonly (readonly [string, string])[] = [
  [`a=1;access_token=${S}`, 'a=1'],
  [`access_token=${S};a=1`, 'a=1'],
  [`b=x%2Fy;access_token=${S};c=a+b&d=%E2%9C%93`, 'b=x%2Fy;c=a+b&d=%E2%9C%93'],
  [`a=1;api_key=${S}&e=;APIKEY=${S}&flag`, 'a=1&e=&flag'],
  [`a=1&access%5Ftoken=${S};z=2`, 'a=1&z=2'],
  [`access_token[]=${S}&a=1`, 'a=1'],
  [`a=1&access_token%5B%5D=${S}&b=2`, 'a=1&b=2'],
  [`a=1&api-key%5b%5d=${S}&Api_Key[]=${S}`, 'a=1'],
  [`a=1;access_token[]=${S};b=2`, 'a=1;b=2'],
]

/** A request with a raw target over HTTP/1.1 (nothing re-encoded on the way). */
function get(p: TestProxy, target: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const u = new URL(p.url)
  return new Promise((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, path: target, headers, agent: false, ca: p.ca }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end()
  })
}

const bearer = { authorization: `Bearer ${KEY}` }

function lastUrl(up: RecordingUpstream): string {
  assert.equal(up.requests.length, 1, 'exactly one request reached the upstream')
  return (up.requests[0] as { url: string }).url
}

for (const queryToken of [false, true]) {
  describe(`query credentials behind ';' and '[]': query tokens ${queryToken ? 'on' : 'off'}`, () => {
    let up: RecordingUpstream
    let p: TestProxy

    before(async () => {
      usedSecrets.add(KEY)
      usedSecrets.add(S)
      up = await startUpstream()
      p = await startProxy({ env: { ...KEY_ENV, GATEHOUSE_UPSTREAM_URL: up.url }, yaml: queryToken ? 'authentication:\n  allowQueryToken: true\n' : '' })
    })
    after(async () => {
      await p.stop()
      await up.close()
      assertNoSecretsInLogs(p.logs, [KEY, S])
    })

    for (const [sent, seen] of SHAPES) {
      it(`HTTP/1.1 ?${sent} reaches the upstream as ?${seen}`, async () => {
        up.reset()
        const r = await get(p, `/v1/things?${sent}`, bearer)
        assert.equal(r.status, 200, r.text)
        assert.equal(lastUrl(up), `/v1/things?${seen}`)
      })
    }

    it('HTTP/2: removed the same way', async () => {
      const s = await h2connect(p.url, p.ca)
      try {
        for (const [sent, seen] of SHAPES) {
          up.reset()
          const r = await h2request(s, { ':path': `/v1/things?${sent}`, ...bearer })
          assert.equal(r.status, 200, r.text)
          assert.equal(lastUrl(up), `/v1/things?${seen}`)
        }
      } finally {
        await h2close(s)
      }
    })

    it('a key in either shape is never a credential: 401 without another one, the upstream saw nothing', async () => {
      for (const q of [`a=1;access_token=${KEY}`, `access_token=${KEY};a=1`, `access_token[]=${KEY}`, `access_token%5B%5D=${KEY}`]) {
        up.reset()
        const r = await get(p, `/v1/things?${q}`)
        assert.equal(r.status, 401, `${q}: ${r.text}`)
        assert.equal(up.requests.length, 0)
      }
    })

    if (queryToken) {
      it('the plain `access_token` still authenticates, and the other shapes beside it are dropped', async () => {
        up.reset()
        const r = await get(p, `/v1/things?access_token=${KEY}&a=1;access_token=${S}&access_token[]=${S}&b=2`)
        assert.equal(r.status, 200, r.text)
        assert.equal(lastUrl(up), '/v1/things?a=1&b=2')
        assert.equal(up.requests[0]?.headers['x-forwarded-user'], 'q-user')
      })
    }
  })
}
