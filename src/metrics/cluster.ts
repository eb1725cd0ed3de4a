/**
 * `/metrics` with `workers: N`: the admin listener is shared by the workers, so whichever worker
 * answers a scrape asks the primary, and the primary asks every worker for its registry through
 * prom-client's `AggregatorRegistry` (cluster IPC) and answers with the sum. Counters and
 * histograms add up; gauges add up (connections, streams) except the JWKS key age (the oldest).
 */
import cluster, { type Worker } from 'node:cluster'
import { promClient, type Metrics } from './metrics.ts'

interface MetricsRequest {
  readonly gh: 'metrics-req'
  readonly id: number
}

interface MetricsReply {
  readonly gh: 'metrics-reply'
  readonly id: number
  readonly text?: string
  readonly error?: string
}

/** How long a worker waits for the primary's sum (prom-client's own per-worker limit is 5 s). */
const REPLY_TIMEOUT_MS = 6_000

/** Primary: answer the workers' requests for the sum of every worker's metrics. */
export function serveClusterMetrics(): (w: Worker) => void {
  const { AggregatorRegistry } = promClient()
  const aggregator = new AggregatorRegistry()
  return (worker) => {
    worker.on('message', (m: MetricsRequest | undefined) => {
      if (m?.gh !== 'metrics-req') return
      aggregator.clusterMetrics().then(
        (text) => {
          if (worker.isConnected()) worker.send({ gh: 'metrics-reply', id: m.id, text } satisfies MetricsReply)
        },
        (e: unknown) => {
          if (worker.isConnected()) worker.send({ gh: 'metrics-reply', id: m.id, error: (e as Error).message } satisfies MetricsReply)
        },
      )
    })
  }
}

/**
 * Worker: offer this worker's registry to the primary's aggregation, and return how to get the
 * sum over all workers (for `/metrics`).
 */
export function joinClusterMetrics(metrics: Metrics): () => Promise<string> {
  // Constructing one installs prom-client's worker-side listener; it then serves our registry.
  const { AggregatorRegistry } = promClient()
  new AggregatorRegistry()
  AggregatorRegistry.setRegistries([metrics.registry])
  let next = 1
  const pending = new Map<number, { resolve: (t: string) => void; reject: (e: Error) => void }>()
  process.on('message', (m: MetricsReply | undefined) => {
    if (m?.gh !== 'metrics-reply') return
    const p = pending.get(m.id)
    if (p === undefined) return
    pending.delete(m.id)
    if (m.text !== undefined) p.resolve(m.text)
    else p.reject(new Error(m.error ?? 'no metrics from the primary'))
  })
  return () =>
    new Promise((resolve, reject) => {
      const id = next++
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error('the primary did not answer with the workers’ metrics in time'))
      }, REPLY_TIMEOUT_MS)
      pending.set(id, {
        resolve: (t) => {
          clearTimeout(timer)
          resolve(t)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      process.send?.({ gh: 'metrics-req', id } satisfies MetricsRequest)
    })
}

/** Whether this process is a worker of a primary that sums the metrics. */
export function isClusterWorker(): boolean {
  return cluster.isWorker
}
