#!/usr/bin/env node
// `npm run cluster [stop | --help]`: compiles the tree (`npm run build`: the
// cluster runs what the image runs) and runs the compiled cluster script —
// except `stop`, which uses the build already there: a working
// tree that does not compile, or the build's seconds, never stand between an
// operator and stopping a running cluster.
import { existsSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'

const entry = fileURLToPath(new URL('../dist/scripts/cluster.js', import.meta.url))
const command = process.argv[2]
const noBuild = command === 'stop' && existsSync(entry)
if (!noBuild) {
  const build = spawnSync(process.execPath, [fileURLToPath(new URL('./build.mjs', import.meta.url))], { stdio: 'inherit' })
  if (build.status !== 0) process.exit(build.status ?? 1)
}
await import(pathToFileURL(entry).href)
