#!/usr/bin/env node
import { main } from '../cli/main.ts'

// `gatehouse config print | head`: a closed pipe ends the output quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0)
  throw e
})

process.exitCode = await main(process.argv.slice(2))
