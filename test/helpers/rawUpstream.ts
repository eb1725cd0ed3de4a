/**
 * A misbehaving upstream on 127.0.0.1:0 that speaks raw TCP. It reads each request head (up to
 * the blank line), records it, and answers with whatever `script` returns for the request path:
 * bytes written as they are (no framing added, connection left open), a function that gets the
 * socket (to reset it, half-write, or do nothing at all), or undefined for a plain 200 `ok`.
 * Tests use it for what no HTTP library would send: garbage, both Content-Length and
 * Transfer-Encoding, a status line that is not HTTP, a body cut short, an unsolicited second
 * response on a kept-alive connection.
 *
 * Request bodies are not parsed; send bodiless requests through it.
 */
import net, { type AddressInfo, type Socket } from 'node:net'

/** What to do with one request: raw bytes to write, or full control of the socket. */
export type RawAction = string | Buffer | ((socket: Socket, head: string) => void)

export interface RawUpstream {
  url: string
  port: number
  /** Every request head received (request line and headers), in arrival order. */
  heads: string[]
  /** Connections accepted so far. */
  readonly connections: number
  /** Connections open right now. */
  openSockets(): number
  /** Forget recorded heads. */
  reset(): void
  close(): Promise<void>
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok'

/** Start a raw upstream; `script` maps a request path to an action. */
export async function startRawUpstream(script: (path: string) => RawAction | undefined): Promise<RawUpstream> {
  const heads: string[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  const server = net.createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = ''
    socket.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1')
      let end
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        const head = buf.slice(0, end)
        buf = buf.slice(end + 4)
        heads.push(head)
        const target = head.split('\r\n')[0]?.split(' ')[1] ?? '/'
        const action = script(target) ?? OK
        if (typeof action === 'function') action(socket, head)
        else socket.write(action)
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    heads,
    get connections() {
      return connections
    },
    openSockets: () => sockets.size,
    reset: () => {
      heads.length = 0
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}
