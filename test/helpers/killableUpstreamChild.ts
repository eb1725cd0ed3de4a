/**
 * The process behind killableUpstream.ts: GET /download/<bytes> streams that many bytes,
 * anything else is 200 `ok`. Prints `{"port":N}` once it listens; exits when stdin closes.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { streamBytes } from './upstream.ts'

process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
const server = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    const m = /^\/download\/(\d+)/.exec(req.url ?? '')
    if (m === null) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 })
      res.end('ok')
      return
    }
    streamBytes(res, Number(m[1]))
  })
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`)
})
