/**
 * Upgrade (WebSocket) handshakes through the proxy without a tunnel: an upstream that records each
 * handshake it receives and refuses it with 403, and a client that sends one upgrade request and
 * returns the status it got back.
 */
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

export interface Handshake {
  url: string
  rawHeaders: string[]
}

export interface RefusingUpgradeUpstream {
  url: string
  /** Every upgrade request received, in arrival order. */
  handshakes: Handshake[]
  close(): Promise<void>
}

/** An upstream on 127.0.0.1:0 that records each upgrade request and answers it 403 (no tunnel is needed to see what reached it). */
export async function startRefusingUpgradeUpstream(): Promise<RefusingUpgradeUpstream> {
  const handshakes: Handshake[] = []
  const server = http.createServer((_req, res) => res.end())
  server.on('upgrade', (req: http.IncomingMessage, socket) => {
    handshakes.push({ url: req.url ?? '', rawHeaders: req.rawHeaders })
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    handshakes,
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/**
 * Send one upgrade request over HTTPS (headers as an object, or a raw [name, value, …] list sent
 * in that order and spelling) and resolve with the status of the answer, upgraded or not.
 */
export function upgradeStatus(p: { url: string; ca: string | undefined }, path: string, headers: http.OutgoingHttpHeaders | string[]): Promise<number> {
  const u = new URL(p.url)
  return new Promise<number>((resolve, reject) => {
    const req = https.request({ host: u.hostname, port: u.port, path, ca: p.ca, agent: false, headers: headers as http.OutgoingHttpHeaders })
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve(res.statusCode ?? 0)
    })
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}
