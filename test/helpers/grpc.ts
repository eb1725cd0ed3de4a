/**
 * A real gRPC server and client (@grpc/grpc-js) for tests, with raw-buffer messages (no .proto
 * files): service `test.Echo` with a unary, a bidi-streaming, a server-streaming and a
 * never-answering method, plus `grpc.health.v1.Health/Check`. The server records every call it
 * receives (method, metadata) and every cancellation, so tests can assert what reached it.
 */
import * as grpc from '@grpc/grpc-js'

const raw = { requestSerialize: (b: Buffer): Buffer => b, requestDeserialize: (b: Buffer): Buffer => b, responseSerialize: (b: Buffer): Buffer => b, responseDeserialize: (b: Buffer): Buffer => b }

/** The test service definition (paths are what gatehouse classifies). */
export const ECHO_SERVICE = {
  Unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, ...raw },
  Chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, ...raw },
  Count: { path: '/test.Echo/Count', requestStream: false, responseStream: true, ...raw },
  Hang: { path: '/test.Echo/Hang', requestStream: false, responseStream: false, ...raw },
  Check: { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false, ...raw },
} satisfies grpc.ServiceDefinition

export interface SeenCall {
  path: string
  metadata: Record<string, string | string[]>
  /** The call's deadline as the server got it (from grpc-timeout); Infinity when none. */
  deadline: number
}

export interface TestGrpcServer {
  port: number
  url: string
  calls: SeenCall[]
  /** Paths of calls the server saw cancelled (client cancel, deadline). */
  cancelled: string[]
  reset(): void
  close(): Promise<void>
}

function mdObject(md: grpc.Metadata): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(md.getMap())) out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v
  for (const k of Object.keys(out)) {
    const all = md.get(k)
    if (all.length > 1) out[k] = all.map(String)
  }
  return out
}

/** Start the recording gRPC server on 127.0.0.1:0 (h2c). */
export async function startGrpcServer(): Promise<TestGrpcServer> {
  const calls: SeenCall[] = []
  const cancelled: string[] = []
  const server = new grpc.Server()
  const record = (path: string, call: { metadata: grpc.Metadata; getDeadline(): grpc.Deadline; on(ev: 'cancelled', f: () => void): unknown }): void => {
    const d = call.getDeadline()
    calls.push({ path, metadata: mdObject(call.metadata), deadline: d instanceof Date ? d.getTime() : d })
    call.on('cancelled', () => cancelled.push(path))
  }
  server.addService(ECHO_SERVICE, {
    Unary(call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      record(ECHO_SERVICE.Unary.path, call)
      const md = new grpc.Metadata()
      md.set('x-echo-user', String(call.metadata.get('x-forwarded-user')[0] ?? ''))
      call.sendMetadata(md)
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request]))
    },
    Chat(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
      record(ECHO_SERVICE.Chat.path, call)
      call.on('data', (d: Buffer) => call.write(Buffer.concat([Buffer.from('re:'), d])))
      call.on('end', () => call.end())
      call.on('error', () => {})
    },
    Count(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      record(ECHO_SERVICE.Count.path, call)
      const n = Number(call.request.toString())
      for (let i = 1; i <= n; i++) call.write(Buffer.from(String(i)))
      call.end()
    },
    Hang(call: grpc.ServerUnaryCall<Buffer, Buffer>) {
      record(ECHO_SERVICE.Hang.path, call)
    },
    Check(call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      record(ECHO_SERVICE.Check.path, call)
      cb(null, Buffer.from([0x08, 0x01])) // HealthCheckResponse{status: SERVING}
    },
  })
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))))
  return {
    port,
    url: `h2c://127.0.0.1:${port}`,
    calls,
    cancelled,
    reset() {
      calls.length = 0
      cancelled.length = 0
    },
    close: () =>
      new Promise<void>((r) => {
        server.forceShutdown()
        r()
      }),
  }
}

/** A grpc-js client of the test service through `url` (https: TLS trusting `ca`; http: plaintext h2c). */
export function echoClient(url: string, ca: string | undefined): grpc.Client {
  const u = new URL(url)
  const Ctor = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo')
  const creds = u.protocol === 'https:' ? grpc.credentials.createSsl(Buffer.from(ca ?? '')) : grpc.credentials.createInsecure()
  // TLS: by name (the certificate covers localhost), so no IP literal is sent as SNI.
  const host = u.protocol === 'https:' && u.hostname === '127.0.0.1' ? 'localhost' : u.hostname
  return new Ctor(`${host}:${u.port}`, creds) as never
}

/** Metadata with a bearer credential (and extra pairs). */
export function bearer(token: string | undefined, extra: Record<string, string> = {}): grpc.Metadata {
  const md = new grpc.Metadata()
  if (token !== undefined) md.set('authorization', `Bearer ${token}`)
  for (const [k, v] of Object.entries(extra)) md.set(k, v)
  return md
}

/** A unary call as a promise: the reply, or the gRPC error (code, details). */
export function unary(client: grpc.Client, method: 'Unary' | 'Hang' | 'Check', body: Buffer, md: grpc.Metadata, opts: grpc.CallOptions = {}): Promise<{ reply?: Buffer; code: number; details: string; headers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined
    const fn = (client as unknown as Record<string, (b: Buffer, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => grpc.ClientUnaryCall>)[method]
    const call = fn?.call(client, body, md, opts, (e, r) => {
      if (e !== null) resolve({ code: e.code, details: e.details, ...(headers === undefined ? {} : { headers }) })
      else resolve({ reply: r as Buffer, code: 0, details: '', ...(headers === undefined ? {} : { headers }) })
    })
    call?.on('metadata', (m: grpc.Metadata) => {
      headers = m
    })
  })
}

type AnyMethod = (...args: unknown[]) => unknown

/** Open the bidi `Chat` call. */
export function chat(client: grpc.Client, md: grpc.Metadata, opts: grpc.CallOptions = {}): grpc.ClientDuplexStream<Buffer, Buffer> {
  return ((client as unknown as Record<string, AnyMethod>).Chat as AnyMethod).call(client, md, opts) as grpc.ClientDuplexStream<Buffer, Buffer>
}

/** Open the server-streaming `Count` call (the server sends 1..n). */
export function count(client: grpc.Client, n: number, md: grpc.Metadata): grpc.ClientReadableStream<Buffer> {
  return ((client as unknown as Record<string, AnyMethod>).Count as AnyMethod).call(client, Buffer.from(String(n)), md) as grpc.ClientReadableStream<Buffer>
}

/** Read the next message of a stream (or the error that ended it). */
export function next(stream: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer): void => {
      stream.off('error', onError)
      resolve(d)
    }
    const onError = (e: Error): void => {
      stream.off('data', onData)
      reject(e)
    }
    stream.once('data', onData)
    stream.once('error', onError)
  })
}
