/**
 * HTTP/2 and gRPC through gatehouse, with h2load (Debian nghttp2-client):
 *
 *   npm run bench:h2 [-- --quick] [--rounds 3] [--secs 3] [--only h2|grpc] [--before /tmp/dist-before]
 *
 * 1. A cached-JWT GET over HTTP/2: gatehouse (OIDC JWT, verified-token cache warm) against
 *    HAProxy 2.6 with an h2 front end and `jwt_verify` (bench/peers/haproxy-h2-jwt.cfg), both
 *    forwarding over HTTP/1.1 keep-alive to nginx `return 200`. Plain h2c (prior knowledge) and TLS
 *    (ALPN h2); 50 connections with 1 and with 10 concurrent streams each. Interleaved rounds (the
 *    order alternates), CPU µs/request of the proxy's process from /proc, ratio gatehouse ÷ HAProxy
 *    per round.
 * 2. gRPC unary calls: a grpc-js server (`helloworld.Greeter/SayHello`, its own process on the load
 *    core) called directly and through gatehouse's data listener (h2c, `upstream.grpcUrl`, the same
 *    OIDC JWT), with the same h2load (a POST of one length-prefixed message, `content-type:
 *    application/grpc`, `te: trailers`). Calls/s, mean latency, gatehouse CPU per call and the
 *    client-observed ratio through ÷ direct.
 *
 * With `--before <dist dir>` it runs instead the before/after pairs of an h2 change: this tree's
 * gatehouse and that build's, loaded at once (same noise) on the proxy core, ratio per round.
 *
 * Proof first: over HTTP/2 both proxies refuse the bad tokens (401) and accept the good one with
 * the right X-Forwarded-User (client copy replaced); over gRPC, a grpc-js client sees status 0 and
 * the reply through gatehouse, UNAUTHENTICATED (16) without or with a bad token. Proxies on CPU 1,
 * h2load and the upstreams on CPU 0; every server on 127.0.0.1 and stopped at the end; every load
 * run bounded in time.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { startIssuer } from '../test/helpers/issuer.ts'
import { generateSelfSignedCertificate } from '../src/tls/selfsigned.ts'
import { ROOT, oidcEnv, render, startGatehouse, startUpstream } from './lib/candidates.ts'
import type { Bar } from './lib/chart.ts'
import { runH2load, type H2loadResult } from './lib/h2load.ts'
import { onPath } from './lib/install.ts'
import { cpuDelta, cpuSnapshot, freePort, hasTaskset, killAllSync, pinSelf, rssSampler, startProc, stopAll, stopProc, truncateQuiet, waitForPort, type Proc } from './lib/proc.ts'
import { proofBadTokens, type BadCredential } from './lib/proof.ts'
import { median } from './lib/report.ts'

export interface H2Options {
  /** One short round per figure (the smoke of the peer benchmark). */
  quick: boolean
  log(s: string): void
  /** CPU of h2load and the upstreams (undefined: no pinning). */
  loadCpu?: number | undefined
  /** CPU of the proxies. */
  proxyCpu?: number | undefined
  /** Scratch directory (a subdirectory is made and removed). */
  dir: string
  rounds?: number
  /** Seconds per load run. */
  secs?: number
  /** Only one part. */
  only?: 'h2' | 'grpc' | undefined
  /** A dist/ directory of another build: run the before/after pairs instead. */
  before?: string | undefined
}

const CONNECTIONS = 50
const STREAMS = [1, 10] as const
const SUBJECT = 'bench-user'
const AUDIENCE = 'gatehouse'
const GRPC_PATH = '/helloworld.Greeter/SayHello'
/** HelloRequest { name: "world" } as protobuf: field 1, wire type 2, length 5. */
const HELLO_REQUEST = Buffer.from([0x0a, 0x05, ...Buffer.from('world')])

interface Target {
  name: string
  kind: 'gatehouse' | 'peer' | 'baseline'
  /** The process whose CPU is counted (undefined: nothing to count, e.g. the direct call). */
  proc: Proc | undefined
  url: string
  log?: string | undefined
  /** gRPC: calls answered with grpc-status 0 so far (h2load counts HTTP status only). */
  okCalls?: () => Promise<number>
}

interface Figures {
  /** Calls that did not end with grpc-status 0 (gRPC only). */
  failed: number[]
  rps: number[]
  cpuUs: number[]
  meanUs: number[]
  rss: number[]
}

const fresh = (): Figures => ({ failed: [], rps: [], cpuUs: [], meanUs: [], rss: [] })
const f = (xs: number[], d = 1): string => (xs.length === 0 ? 'n/a' : `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`)
const mib = (b: number): number => b / 1048576

/** Run the HTTP/2 and gRPC tables; the processes it starts are stopped before it returns. */
export async function runH2(opts: H2Options): Promise<{ markdown: string; bars: Bar[] }> {
  if (!onPath('h2load')) throw new Error('bench/h2.ts needs h2load (Debian package nghttp2-client)')
  const rounds = opts.rounds ?? (opts.quick ? 1 : 3)
  const secs = opts.secs ?? (opts.quick ? 2 : 3)
  const warmSecs = opts.quick ? 1 : 2
  const { log, loadCpu, proxyCpu } = opts
  mkdirSync(opts.dir, { recursive: true })
  const dir = mkdtempSync(path.join(opts.dir, 'h2-'))
  const issuer = await startIssuer({ audience: AUDIENCE })
  const procs: Proc[] = []
  const md: string[] = []
  const bars: Bar[] = []
  try {
    const now = Math.floor(Date.now() / 1000)
    const goodJwt = await issuer.sign({ sub: SUBJECT, iat: now, exp: now + 86_400 })
    const bad = await proofBadTokens(issuer, goodJwt, SUBJECT)
    const jwtKeyFile = path.join(dir, 'issuer-public.pem')
    writeFileSync(jwtKeyFile, createPublicKey({ key: issuer.keys.publicJwk(issuer.keys.signingKid) as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string, { mode: 0o644 })
    const cert = generateSelfSignedCertificate({ commonName: 'gatehouse bench', days: 2 })
    const tlsFiles = { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem'), combinedFile: path.join(dir, 'combined.pem') }
    writeFileSync(tlsFiles.certFile, cert.certPem, { mode: 0o644 })
    writeFileSync(tlsFiles.keyFile, cert.keyPem, { mode: 0o600 })
    writeFileSync(tlsFiles.combinedFile, cert.certPem + cert.keyPem, { mode: 0o600 })
    const up = await startUpstream(dir, loadCpu)
    procs.push(up.proc)
    const ctx = { dir, upUrl: `http://127.0.0.1:${up.port}`, tls: tlsFiles, proxyCpu, issuer, audience: AUDIENCE }
    const auth = `Bearer ${goodJwt}`
    /** `streams` 0: HTTP/1.1 (h2load --h1), one request at a time per connection. */
    const load = (t: Target, streams: number, seconds: number, grpcFile?: string): Promise<H2loadResult> =>
      runH2load({
        url: `${t.url}${grpcFile === undefined ? '/bench' : GRPC_PATH}`,
        h1: streams === 0,
        connections: CONNECTIONS,
        streams,
        seconds,
        auth,
        cpu: loadCpu,
        ...(grpcFile === undefined ? {} : { headers: ['content-type: application/grpc', 'te: trailers'], dataFile: grpcFile }),
      })
    /** One measured run of `t`: h2load's figures and the CPU and peak RSS of its process. */
    const measure = async (t: Target, streams: number, into: Figures, grpcFile?: string): Promise<void> => {
      if (t.log !== undefined) truncateQuiet(t.log)
      const s = t.proc === undefined ? undefined : cpuSnapshot(t.proc.pid)
      const rss = t.proc === undefined ? undefined : rssSampler(t.proc.pid)
      const ok0 = await t.okCalls?.()
      let r: H2loadResult
      try {
        r = await load(t, streams, secs, grpcFile)
      } catch (e) {
        rss?.stop()
        log(`${t.name} m${streams}: ${String(e).slice(0, 300)}: not counted`)
        return
      }
      const peak = rss?.stop()
      // The access lines of the last calls are written after h2load has its answers.
      if (ok0 !== undefined) await new Promise((res) => setTimeout(res, 300))
      if (r.failed > 0 || r.ok2xx < r.succeeded || r.succeeded === 0) {
        log(`${t.name} m${streams}: ${r.failed} failed, ${r.succeeded - r.ok2xx} not 2xx: not counted`)
        return
      }
      // gRPC: a call is good when its trailers say grpc-status 0; only those count as calls/s.
      const ok = ok0 === undefined || t.okCalls === undefined ? r.succeeded : Math.min(r.succeeded, (await t.okCalls()) - ok0)
      if (ok0 !== undefined) into.failed.push(r.succeeded - ok)
      if (ok < r.succeeded) log(`${t.name} m${streams}: ${r.succeeded - ok} of ${r.succeeded} calls did not end with grpc-status 0`)
      into.rps.push((r.rps * ok) / r.succeeded)
      into.meanUs.push(r.meanUs)
      if (s !== undefined && t.proc !== undefined) into.cpuUs.push((cpuDelta(s, cpuSnapshot(t.proc.pid)) * 1e6) / r.succeeded)
      if (peak !== undefined) into.rss.push(mib(peak))
    }

    const here = path.join(ROOT, 'dist/bin/gatehouse.js')
    if (opts.before !== undefined) {
      const old = path.join(path.resolve(opts.before), 'bin/gatehouse.js')
      md.push(await beforeAfter())
      return { markdown: md.join('\n'), bars }

      async function beforeAfter(): Promise<string> {
        const out: string[] = ['| listener | streams/conn | this ÷ before, CPU µs/req median (range) | this µs/req | before µs/req | this req/s | before req/s |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |']
        for (const tls of opts.only === 'grpc' ? [] : [false, true]) {
          const a = await startGh(`gh-h2-this-${scheme(tls)}`, tls, here)
          const b = await startGh(`gh-h2-before-${scheme(tls)}`, tls, old)
          for (const streams of STREAMS) {
            await Promise.all([load(a, streams, warmSecs), load(b, streams, warmSecs)])
            const fa = fresh()
            const fb = fresh()
            const ratios: number[] = []
            for (let r = 0; r < rounds; r++) {
              const n = fa.cpuUs.length
              const m = fb.cpuUs.length
              const pair = [measure(a, streams, fa), measure(b, streams, fb)]
              await Promise.all(r % 2 === 0 ? pair : pair.reverse())
              if (fa.cpuUs.length > n && fb.cpuUs.length > m) {
                const ratio = (fa.cpuUs.at(-1) as number) / (fb.cpuUs.at(-1) as number)
                ratios.push(ratio)
                log(`${scheme(tls)} m${streams} round ${r + 1}: this ${fa.cpuUs.at(-1)?.toFixed(1)} / before ${fb.cpuUs.at(-1)?.toFixed(1)} µs/req = ${ratio.toFixed(3)}×`)
              }
            }
            out.push(`| ${tls ? 'TLS (ALPN h2)' : 'h2c'} | ${streams} | ${f(ratios, 3)}× | ${f(fa.cpuUs)} | ${f(fb.cpuUs)} | ${f(fa.rps, 0)} | ${f(fb.rps, 0)} |`)
          }
          await stopProc(a.proc as Proc)
          await stopProc(b.proc as Proc)
        }
        if (opts.only !== 'h2') {
          const { grpcPort, grpcFile } = await startGrpcUpstream()
          const a = await startGhGrpc('gh-grpc-this', here, grpcPort)
          const b = await startGhGrpc('gh-grpc-before', old, grpcPort)
          for (const streams of STREAMS) {
            await Promise.all([load(a, streams, warmSecs, grpcFile), load(b, streams, warmSecs, grpcFile)])
            const fa = fresh()
            const fb = fresh()
            const ratios: number[] = []
            const rpsRatios: number[] = []
            for (let r = 0; r < rounds; r++) {
              const n = fa.cpuUs.length
              const m = fb.cpuUs.length
              const pair = [measure(a, streams, fa, grpcFile), measure(b, streams, fb, grpcFile)]
              await Promise.all(r % 2 === 0 ? pair : pair.reverse())
              if (fa.cpuUs.length > n && fb.cpuUs.length > m) {
                ratios.push((fa.cpuUs.at(-1) as number) / (fb.cpuUs.at(-1) as number))
                rpsRatios.push((fa.rps.at(-1) as number) / (fb.rps.at(-1) as number))
                log(`grpc m${streams} round ${r + 1}: this ${fa.cpuUs.at(-1)?.toFixed(1)} µs/call ${fa.rps.at(-1)?.toFixed(0)} calls/s (${fa.failed.at(-1)} not OK) / before ${fb.cpuUs.at(-1)?.toFixed(1)} µs/call ${fb.rps.at(-1)?.toFixed(0)} calls/s (${fb.failed.at(-1)} not OK)`)
              }
            }
            out.push(`| gRPC unary, h2c | ${streams} | ${f(ratios, 3)}× (calls/s this ÷ before: ${f(rpsRatios, 2)}×) | ${f(fa.cpuUs)} | ${f(fb.cpuUs)} | ${f(fa.rps, 0)} (not OK: ${f(fa.failed, 0)}) | ${f(fb.rps, 0)} (not OK: ${f(fb.failed, 0)}) |`)
          }
        }
        out.push('', `Same-noise pairs: both builds loaded at once (an h2load -t1 -c${CONNECTIONS} each${loadCpu === undefined ? '' : ` on CPU ${loadCpu}`}; both gatehouse processes${proxyCpu === undefined ? '' : ` on CPU ${proxyCpu}`}), ${rounds} round(s) × ${secs} s after a ${warmSecs} s warm-up, OIDC JWT with the cache warm, GET of a 2-byte body.`)
        return out.join('\n') + '\n'
      }
    }

    async function startGh(id: string, tls: boolean, bin: string, env: Record<string, string> = {}): Promise<Target> {
      const { proc, url } = await startGatehouse(ctx, id, tls, { ...oidcEnv(ctx), ...env }, undefined, bin)
      procs.push(proc)
      const t: Target = { name: `gatehouse OIDC JWT, cache warm, ${tls ? 'TLS h2' : 'h2c'}`, kind: 'gatehouse', proc, url, log: proc.logFile }
      await proveH2(t, auth, bad, log)
      return t
    }

    async function startGrpcUpstream(): Promise<{ gsrv: Proc; grpcPort: number; grpcFile: string }> {
      const grpcPort = await freePort()
      const self = fileURLToPath(import.meta.url)
      const gsrv = startProc('grpc-upstream', [process.execPath, '--import', 'tsx', self, '--grpc-upstream', String(grpcPort)], { cpu: loadCpu, cwd: ROOT, logFile: path.join(dir, 'grpc-upstream.out') })
      procs.push(gsrv)
      await waitForPort(grpcPort, gsrv, 30_000)
      const frame = Buffer.alloc(5 + HELLO_REQUEST.length)
      frame.writeUInt32BE(HELLO_REQUEST.length, 1)
      HELLO_REQUEST.copy(frame, 5)
      const grpcFile = path.join(dir, 'hello.grpc')
      writeFileSync(grpcFile, frame)
      return { gsrv, grpcPort, grpcFile }
    }

    async function startGhGrpc(id: string, bin: string, grpcPort: number): Promise<Target> {
      const { proc, url } = await startGatehouse(ctx, id, false, { ...oidcEnv(ctx), GATEHOUSE_UPSTREAM_GRPC_URL: `h2c://127.0.0.1:${grpcPort}` }, undefined, bin)
      procs.push(proc)
      return { name: 'through gatehouse (OIDC JWT, h2c)', kind: 'gatehouse', proc, url, okCalls: async () => countGrpcOk(proc.logFile) }
    }

    async function startHaproxyH2(tls: boolean): Promise<Target> {
      const port = await freePort()
      const id = `haproxy-h2-jwt-${scheme(tls)}`
      const conf = render(
        'haproxy-h2-jwt.cfg',
        {
          PORT: port,
          UP_PORT: up.port,
          ISSUER: issuer.url,
          AUDIENCE,
          JWT_KEY: jwtKeyFile,
          HAPROXY_BIND_OPTS: tls ? ` ssl crt ${tlsFiles.combinedFile} alpn h2` : ' proto h2',
          HAPROXY_GLOBAL_TLS: tls ? '  ssl-default-bind-options ssl-min-ver TLSv1.2' : '',
        },
        path.join(dir, `${id}.cfg`),
      )
      const proc = startProc(id, ['haproxy', '-db', '-f', conf], { cpu: proxyCpu, logFile: path.join(dir, `${id}.out`) })
      procs.push(proc)
      await waitForPort(port, proc)
      const t: Target = { name: `HAProxy 2.6 h2 jwt_verify, ${tls ? 'TLS h2' : 'h2c'}`, kind: 'peer', proc, url: `${scheme(tls)}://127.0.0.1:${port}`, log: proc.logFile }
      await proveH2(t, auth, bad, log)
      return t
    }

    // --- 1. cached JWT over HTTP/2: gatehouse against HAProxy --------------------------------
    if (opts.only !== 'grpc' && onPath('haproxy')) {
      md.push('### Cached JWT over HTTP/2: gatehouse and HAProxy jwt_verify (h2load)', '')
      md.push('| listener | streams/conn | candidate | CPU µs/req | req/s | mean latency ms | peak RSS MiB | gatehouse ÷ HAProxy CPU per round |', '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |')
      for (const tls of [false, true]) {
        const gh = await startGh(`gh-h2-jwt-${scheme(tls)}`, tls, here)
        const hp = await startHaproxyH2(tls)
        for (const streams of STREAMS) {
          for (const t of [gh, hp]) await load(t, streams, warmSecs)
          const fg = fresh()
          const fh = fresh()
          const ratios: number[] = []
          for (let r = 0; r < rounds; r++) {
            const order: [Target, Figures][] = r % 2 === 0 ? [[gh, fg], [hp, fh]] : [[hp, fh], [gh, fg]]
            const before = [fg.cpuUs.length, fh.cpuUs.length]
            for (const [t, fig] of order) await measure(t, streams, fig)
            if (fg.cpuUs.length > (before[0] as number) && fh.cpuUs.length > (before[1] as number)) ratios.push((fg.cpuUs.at(-1) as number) / (fh.cpuUs.at(-1) as number))
          }
          const label = tls ? 'TLS (ALPN h2)' : 'h2c (prior knowledge)'
          for (const [t, fig] of [[gh, fg], [hp, fh]] as const) {
            md.push(`| ${label} | ${streams} | ${t.name.split(',')[0]} | ${f(fig.cpuUs)} | ${f(fig.rps, 0)} | ${f(fig.meanUs.map((u) => u / 1000), 2)} | ${f(fig.rss)} | ${t === gh ? `${f(ratios, 2)}×` : ''} |`)
            bars.push({ label: `${t.name}, ${streams} stream${streams === 1 ? '' : 's'}/conn`, kind: t.kind, value: median(fig.cpuUs), min: Math.min(...fig.cpuUs), max: Math.max(...fig.cpuUs) })
          }
          log(`h2 ${scheme(tls)} m${streams}: gatehouse ${f(fg.cpuUs)} µs/req, HAProxy ${f(fh.cpuUs)} µs/req, ratio ${f(ratios, 2)}×`)
        }
        // The same gatehouse over HTTP/1.1 from the same tool: what HTTP/2 costs it over HTTP/1.1.
        await load(gh, 0, warmSecs)
        const f1 = fresh()
        for (let r = 0; r < rounds; r++) await measure(gh, 0, f1)
        md.push(`| ${tls ? 'TLS (ALPN http/1.1)' : 'HTTP/1.1'} | — | gatehouse OIDC JWT, HTTP/1.1 (h2load --h1) | ${f(f1.cpuUs)} | ${f(f1.rps, 0)} | ${f(f1.meanUs.map((u) => u / 1000), 2)} | ${f(f1.rss)} | |`)
        log(`h1 ${scheme(tls)}: gatehouse ${f(f1.cpuUs)} µs/req`)
        await stopProc(gh.proc as Proc)
        await stopProc(hp.proc as Proc)
      }
      md.push(
        '',
        `h2load -t1 -c${CONNECTIONS} -m1 / -m10${loadCpu === undefined ? '' : ` on CPU ${loadCpu}`}, proxies${proxyCpu === undefined ? '' : ` on CPU ${proxyCpu}`} (one worker/thread), ${rounds} interleaved round(s) × ${secs} s after a ${warmSecs} s warm-up; medians (range). Both proxies verify the same RS256 token (HAProxy on every request; gatehouse once, then from its verified-token cache), check iss/aud/exp, replace X-Forwarded-User and forward over HTTP/1.1 keep-alive to nginx \`return 200\`. Goal: gatehouse ÷ HAProxy ≤ 1.3×.`,
        '',
      )
    } else if (opts.only !== 'grpc') md.push('HAProxy is not installed: the HTTP/2 table is not run.', '')

    // --- 2. gRPC unary: direct and through gatehouse ------------------------------------------
    if (opts.only !== 'h2') {
      const { gsrv, grpcPort, grpcFile } = await startGrpcUpstream()
      const gh = await startGhGrpc('gh-grpc', here, grpcPort)
      const direct: Target = { name: 'direct to the grpc-js server (h2c)', kind: 'baseline', proc: undefined, url: `http://127.0.0.1:${grpcPort}`, okCalls: () => servedCalls(gsrv) }
      await proveGrpc(gh.url.replace(/^http:\/\//, ''), `127.0.0.1:${grpcPort}`, goodJwt, bad, log)
      md.push('### gRPC unary calls: direct and through gatehouse (h2load)', '')
      md.push('| streams/conn | path | calls/s (grpc-status 0) | calls not OK per run | mean latency ms | gatehouse CPU µs/call | through ÷ direct calls/s | through ÷ direct latency |', '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
      for (const streams of STREAMS) {
        for (const t of [gh, direct]) await load(t, streams, warmSecs, grpcFile)
        const fg = fresh()
        const fd = fresh()
        const rpsRatio: number[] = []
        const latRatio: number[] = []
        for (let r = 0; r < rounds; r++) {
          const order: [Target, Figures][] = r % 2 === 0 ? [[gh, fg], [direct, fd]] : [[direct, fd], [gh, fg]]
          const before = [fg.rps.length, fd.rps.length]
          for (const [t, fig] of order) await measure(t, streams, fig, grpcFile)
          if (fg.rps.length > (before[0] as number) && fd.rps.length > (before[1] as number)) {
            rpsRatio.push((fg.rps.at(-1) as number) / (fd.rps.at(-1) as number))
            latRatio.push((fg.meanUs.at(-1) as number) / (fd.meanUs.at(-1) as number))
          }
        }
        md.push(`| ${streams} | ${gh.name} | ${f(fg.rps, 0)} | ${f(fg.failed, 0)} | ${f(fg.meanUs.map((u) => u / 1000), 2)} | ${f(fg.cpuUs)} | ${f(rpsRatio, 2)}× | ${f(latRatio, 2)}× |`)
        md.push(`| ${streams} | ${direct.name} | ${f(fd.rps, 0)} | ${f(fd.failed, 0)} | ${f(fd.meanUs.map((u) => u / 1000), 2)} | — | | |`)
        bars.push({ label: `gatehouse gRPC unary (h2c), ${streams} stream${streams === 1 ? '' : 's'}/conn`, kind: 'gatehouse', value: median(fg.cpuUs), min: Math.min(...fg.cpuUs), max: Math.max(...fg.cpuUs) })
        log(`grpc m${streams}: through ${f(fg.rps, 0)} calls/s (${f(fg.cpuUs)} µs/call), direct ${f(fd.rps, 0)} calls/s, ratio ${f(rpsRatio, 2)}×`)
      }
      md.push(
        '',
        `h2load -t1 -c${CONNECTIONS} -m1 / -m10${loadCpu === undefined ? '' : ` on CPU ${loadCpu}`}, POST ${GRPC_PATH} with one length-prefixed HelloRequest, \`content-type: application/grpc\`, \`te: trailers\`, the bearer token on every call (the direct server ignores it). The grpc-js server (@grpc/grpc-js, its own Node process) runs${loadCpu === undefined ? '' : ` on CPU ${loadCpu}, next to h2load`}; gatehouse${proxyCpu === undefined ? '' : ` on CPU ${proxyCpu}`} forwards over its own h2c session to it. ${rounds} interleaved round(s) × ${secs} s after a ${warmSecs} s warm-up; medians (range). The proof checked grpc-status 0 and the reply with a grpc-js client, and UNAUTHENTICATED for missing and bad tokens; h2load itself counts HTTP status only.`,
        '',
      )
    }
    return { markdown: md.join('\n'), bars }
  } finally {
    for (const p of procs) await stopProc(p)
    await issuer.close()
    if (process.env.GATEHOUSE_BENCH_KEEP === undefined) rmSync(dir, { recursive: true, force: true })
  }
}

const scheme = (tls: boolean): string => (tls ? 'https' : 'http')

/** gRPC calls gatehouse's access log shows ending with grpc-status 0. */
function countGrpcOk(logFile: string): number {
  let n = 0
  for (const line of readFileSync(logFile, 'utf8').split('\n')) if (line.includes('"method":"GRPC"') && /"status":0[,}]/.test(line)) n++
  return n
}

/** Calls the gRPC upstream has answered (it writes `served N` to its log on SIGUSR2). */
async function servedCalls(p: Proc): Promise<number> {
  const before = readFileSync(p.logFile, 'utf8').length
  process.kill(p.pid, 'SIGUSR2')
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 20))
    const m = /served (\d+)\n/.exec(readFileSync(p.logFile, 'utf8').slice(before))
    if (m !== null) return Number(m[1])
  }
  throw new Error('gRPC upstream: no answer to SIGUSR2')
}

/** One GET over a fresh HTTP/2 session (h2c prior knowledge, or TLS with ALPN h2 only). */
function h2get(base: string, p: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base, { rejectUnauthorized: false, ALPNProtocols: ['h2'] })
    const timer = setTimeout(() => {
      session.destroy()
      reject(new Error(`${base}${p}: no answer in 10 s`))
    }, 10_000)
    session.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    const req = session.request({ ':method': 'GET', ':path': p, ...headers })
    let status = 0
    let body = ''
    req.on('response', (h) => (status = Number(h[':status'])))
    req.setEncoding('utf8')
    req.on('data', (d: string) => (body += d))
    req.on('error', (e) => {
      clearTimeout(timer)
      session.destroy()
      reject(e)
    })
    req.once('end', () => {
      clearTimeout(timer)
      session.close()
      resolve({ status, body })
    })
  })
}

/** Proof over HTTP/2: bad tokens refused, the good one forwarded with the right identity. */
async function proveH2(t: Target, good: string, bad: BadCredential[], log: (s: string) => void): Promise<void> {
  const fails: string[] = []
  for (const b of bad) {
    const r = await h2get(t.url, '/bench', b.authorization === undefined ? {} : { authorization: b.authorization })
    if (r.status !== 401 && r.status !== 403) fails.push(`${b.label}: ${r.status}`)
  }
  const ok = await h2get(t.url, '/bench', { authorization: good })
  if (ok.status !== 200 || ok.body !== 'ok') fails.push(`good token: ${ok.status} ${JSON.stringify(ok.body.slice(0, 120))}`)
  const who = await h2get(t.url, '/whoami', { authorization: good, 'x-forwarded-user': 'spoofed-by-client' })
  if (who.body !== `user=${SUBJECT}`) fails.push(`identity: upstream saw ${JSON.stringify(who.body.slice(0, 120))}`)
  if (fails.length > 0) throw new Error(`${t.name} failed its HTTP/2 proof: ${fails.join('; ')}`)
  log(`${t.name}: HTTP/2 proof ok (${bad.length} bad tokens refused, good accepted, X-Forwarded-User ${SUBJECT})`)
}

/** Proof over gRPC with a grpc-js client: status 0 and the reply through gatehouse and direct; 16 for bad tokens. */
async function proveGrpc(through: string, direct: string, good: string, bad: BadCredential[], log: (s: string) => void): Promise<void> {
  const grpc = await import('@grpc/grpc-js')
  const call = (target: string, authorization: string | undefined): Promise<{ code: number; reply: Buffer | undefined }> =>
    new Promise((resolve) => {
      const client = new grpc.Client(target, grpc.credentials.createInsecure())
      const md = new grpc.Metadata()
      if (authorization !== undefined) md.set('authorization', authorization)
      client.makeUnaryRequest(
        GRPC_PATH,
        (b: Buffer) => b,
        (b: Buffer) => b,
        HELLO_REQUEST,
        md,
        { deadline: Date.now() + 10_000 },
        (err, reply) => {
          client.close()
          resolve({ code: err?.code ?? 0, reply })
        },
      )
    })
  const expected = helloReply(Buffer.from('world')).toString('hex')
  const fails: string[] = []
  for (const [name, target] of [['through gatehouse', through], ['direct', direct]] as const) {
    const r = await call(target, `Bearer ${good}`)
    if (r.code !== 0 || r.reply?.toString('hex') !== expected) fails.push(`${name}: status ${r.code}, reply ${r.reply?.toString('hex')}`)
  }
  for (const b of bad) {
    const r = await call(through, b.authorization)
    if (r.code !== grpc.status.UNAUTHENTICATED) fails.push(`${b.label}: status ${r.code}, expected 16`)
  }
  if (fails.length > 0) throw new Error(`gRPC proof failed: ${fails.join('; ')}`)
  log(`gRPC proof ok: grpc-status 0 and the HelloReply through gatehouse and direct; UNAUTHENTICATED for ${bad.length} bad tokens`)
}

/** HelloReply { message: "Hello " + name }; `req` is the name's bytes. */
function helloReply(name: Buffer): Buffer {
  const msg = Buffer.concat([Buffer.from('Hello '), name])
  return Buffer.concat([Buffer.from([0x0a, msg.length]), msg])
}

/** The gRPC upstream: helloworld.Greeter/SayHello with raw (hand-encoded protobuf) messages. */
async function serveGrpc(port: number): Promise<void> {
  const grpc = await import('@grpc/grpc-js')
  const server = new grpc.Server()
  let served = 0
  process.on('SIGUSR2', () => process.stdout.write(`served ${served}\n`))
  const raw = { requestSerialize: (b: Buffer): Buffer => b, requestDeserialize: (b: Buffer): Buffer => b, responseSerialize: (b: Buffer): Buffer => b, responseDeserialize: (b: Buffer): Buffer => b }
  server.addService({ SayHello: { path: GRPC_PATH, requestStream: false, responseStream: false, ...raw } }, {
    SayHello(call: { request: Buffer }, cb: (e: null, r: Buffer) => void) {
      // HelloRequest is field 1 (0x0a), a one-byte length, the name.
      const req = call.request
      const name = req[0] === 0x0a ? req.subarray(2, 2 + (req[1] ?? 0)) : Buffer.alloc(0)
      served++
      cb(null, helloReply(name))
    },
  })
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e) => (e === null ? resolve() : reject(e))))
  process.on('SIGTERM', () => server.forceShutdown())
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2)
  const val = (flag: string): string | undefined => {
    const i = argv.indexOf(flag)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const grpcPort = val('--grpc-upstream')
  if (grpcPort !== undefined) {
    await serveGrpc(Number(grpcPort))
  } else {
    process.on('exit', killAllSync)
    const pin = hasTaskset && os.cpus().length >= 2
    if (pin) pinSelf(0)
    const t0 = Date.now()
    try {
      const r = await runH2({
        quick: argv.includes('--quick'),
        log: (s) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`),
        loadCpu: pin ? 0 : undefined,
        proxyCpu: pin ? 1 : undefined,
        dir: os.tmpdir(),
        ...(val('--rounds') === undefined ? {} : { rounds: Number(val('--rounds')) }),
        ...(val('--secs') === undefined ? {} : { secs: Number(val('--secs')) }),
        only: val('--only') as 'h2' | 'grpc' | undefined,
        before: val('--before'),
      })
      console.log(r.markdown)
    } finally {
      await stopAll()
    }
    process.exit(0)
  }
}
