/**
 * The real weaviate-client (npm, 3.14) sends its queries over gRPC: through gatehouse (data
 * listener with ALPN h2, and the gRPC-only listener) to a Weaviate stand-in that serves the
 * client's own gRPC service (weaviate.v1.Weaviate, with the message codecs the package ships).
 * The read-only user's fetchObjects (Search, a read) is allowed; its batch insert (BatchObjects,
 * a write) is refused with PERMISSION_DENIED and never reaches the stand-in.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { BatchObjectsReply, BatchObjectsRequest } from '../../node_modules/weaviate-client/dist/node/esm/proto/v1/batch.js'
import { SearchReply, SearchRequest } from '../../node_modules/weaviate-client/dist/node/esm/proto/v1/search_get.js'
import { assertNoSecretsInLogs, startProxy, type TestProxy } from '../helpers/proxy.ts'
import { runWeaviateFixture } from '../helpers/weaviateClient.ts'

const ADMIN_KEY = 'wg-admin-key-51aa0e'
const READER_KEY = 'wg-reader-key-c03b7f'
const UUID = '6f9a0c52-2d4e-4b8a-9a57-0d3c2b1e4f10'

interface Seen {
  method: string
  user: string | undefined
  authorization: string | undefined
  collection?: string
}

/** The Weaviate stand-in: REST /v1/meta (the client's version check) and the gRPC service. */
async function startWeaviate(): Promise<{ restUrl: string; grpcUrl: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = []
  const rest = http.createServer((req, res) => {
    const body = req.url === '/v1/meta' ? JSON.stringify({ version: '1.32.0', hostname: 'http://[::]:8080', modules: {} }) : '{}'
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  await new Promise<void>((r) => rest.listen(0, '127.0.0.1', r))
  const server = new grpc.Server()
  const def = {
    Search: {
      path: '/weaviate.v1.Weaviate/Search',
      requestStream: false,
      responseStream: false,
      requestSerialize: (m: SearchRequest) => Buffer.from(SearchRequest.encode(m).finish()),
      requestDeserialize: (b: Buffer) => SearchRequest.decode(b),
      responseSerialize: (m: SearchReply) => Buffer.from(SearchReply.encode(m).finish()),
      responseDeserialize: (b: Buffer) => SearchReply.decode(b),
    },
    BatchObjects: {
      path: '/weaviate.v1.Weaviate/BatchObjects',
      requestStream: false,
      responseStream: false,
      requestSerialize: (m: BatchObjectsRequest) => Buffer.from(BatchObjectsRequest.encode(m).finish()),
      requestDeserialize: (b: Buffer) => BatchObjectsRequest.decode(b),
      responseSerialize: (m: BatchObjectsReply) => Buffer.from(BatchObjectsReply.encode(m).finish()),
      responseDeserialize: (b: Buffer) => BatchObjectsReply.decode(b),
    },
  } satisfies grpc.ServiceDefinition
  const who = (md: grpc.Metadata): Pick<Seen, 'user' | 'authorization'> => ({ user: md.get('x-forwarded-user')[0]?.toString(), authorization: md.get('authorization')[0]?.toString() })
  server.addService(def, {
    Search(call: grpc.ServerUnaryCall<SearchRequest, SearchReply>, cb: grpc.sendUnaryData<SearchReply>) {
      seen.push({ method: 'Search', ...who(call.metadata), collection: call.request.collection })
      cb(
        null,
        SearchReply.fromPartial({
          took: 1,
          results: [{ properties: { nonRefProps: { fields: { title: { textValue: 'through gatehouse' } } } }, metadata: { id: UUID } }],
        }),
      )
    },
    BatchObjects(call: grpc.ServerUnaryCall<BatchObjectsRequest, BatchObjectsReply>, cb: grpc.sendUnaryData<BatchObjectsReply>) {
      seen.push({ method: 'BatchObjects', ...who(call.metadata), collection: call.request.objects[0]?.collection })
      cb(null, BatchObjectsReply.fromPartial({ took: 1, errors: [] }))
    },
  })
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))))
  return {
    restUrl: `http://127.0.0.1:${(rest.address() as AddressInfo).port}`,
    grpcUrl: `h2c://127.0.0.1:${port}`,
    seen,
    close: async () => {
      server.forceShutdown()
      rest.closeAllConnections()
      await new Promise<void>((r) => rest.close(() => r()))
    },
  }
}

function runClient(gh: TestProxy, grpcPort: string, key: string): Promise<Record<string, unknown>> {
  return runWeaviateFixture('grpc.ts', gh, { GRPC_PORT: grpcPort, API_KEY: key })
}

describe('weaviate-client over gRPC through gatehouse', () => {
  let wv: Awaited<ReturnType<typeof startWeaviate>>
  let gh: TestProxy

  before(async () => {
    wv = await startWeaviate()
    gh = await startProxy({
      env: {
        GATEHOUSE_UPSTREAM_URL: wv.restUrl,
        GATEHOUSE_UPSTREAM_GRPC_URL: wv.grpcUrl,
        GATEHOUSE_UPSTREAM_PROFILE: 'weaviate',
        GATEHOUSE_GRPC_ENABLED: 'true',
        GATEHOUSE_GRPC_PORT: '0',
        GATEHOUSE_GRPC_ADDRESS: '127.0.0.1',
        AUTHENTICATION_APIKEY_ENABLED: 'true',
        AUTHENTICATION_APIKEY_ALLOWED_KEYS: `${ADMIN_KEY},${READER_KEY}`,
        AUTHENTICATION_APIKEY_USERS: 'admin-svc,reader-svc',
        AUTHORIZATION_ADMINLIST_ENABLED: 'true',
        AUTHORIZATION_ADMINLIST_USERS: 'admin-svc',
        AUTHORIZATION_ADMINLIST_READONLY_USERS: 'reader-svc',
      },
    })
  })
  after(async () => {
    await gh.stop()
    await wv.close()
    assertNoSecretsInLogs(gh.logs)
  })

  it('the read-only user: fetchObjects (Search) through the data listener (ALPN h2) is allowed; its batch insert (BatchObjects) is PERMISSION_DENIED and never reaches Weaviate', async () => {
    wv.seen.length = 0
    const r = await runClient(gh, new URL(gh.url).port, READER_KEY)
    assert.equal(r.error, undefined, String(r.error))
    assert.deepEqual(r.fetch, [{ uuid: UUID, title: 'through gatehouse' }])
    assert.notEqual(r.insert, 'ok')
    assert.match(String(r.insert), /Permission|Insufficient|Error/)
    assert.deepEqual(wv.seen, [{ method: 'Search', user: 'reader-svc', authorization: undefined, collection: 'Article' }])
    const denied = gh.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.path === '/weaviate.v1.Weaviate/BatchObjects')
    assert.equal(denied.length, 1)
    assert.equal(denied[0]?.status, grpc.status.PERMISSION_DENIED)
  })

  it('the admin user through the gRPC-only listener: Search and BatchObjects both reach Weaviate as the key’s user', async () => {
    wv.seen.length = 0
    const r = await runClient(gh, new URL(gh.server.grpcUrl as string).port, ADMIN_KEY)
    assert.equal(r.error, undefined, String(r.error))
    assert.deepEqual(r.fetch, [{ uuid: UUID, title: 'through gatehouse' }])
    assert.equal(r.insert, 'ok')
    assert.deepEqual(
      wv.seen.map((s) => [s.method, s.user, s.authorization, s.collection]),
      [
        ['Search', 'admin-svc', undefined, 'Article'],
        ['BatchObjects', 'admin-svc', undefined, 'Article'],
      ],
    )
  })
})
