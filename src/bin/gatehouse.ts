#!/usr/bin/env node
import { main } from '../cli/main.ts'

// `gatehouse config print | head`: a closed pipe ends the output quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0)
  throw e
})

const serving = process.argv[2] === 'serve'
// Before the server's modules load: their start-up allocation alone would grow the young
// generation to its 32 MiB maximum (src/bin/youngGeneration.ts). Other commands skip it.
if (serving) (await import('./youngGeneration.ts')).capYoungGeneration()
const code = await main(process.argv.slice(2))
// `serve` has drained and flushed its logs when main returns; a cluster worker's IPC channel
// (and the primary's cluster handles) would otherwise keep the process alive. Workers run
// `serve` too (cluster.fork keeps the arguments), so every other command skips loading
// node:cluster (and child_process with it: ~9 ms of start-up).
if (serving) process.exit(code)
process.exitCode = code
