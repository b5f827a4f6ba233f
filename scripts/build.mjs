#!/usr/bin/env node
// `npm run build`: the roles and scripts compiled with tsc into dist/ (same
// layout as the sources), plus the frontend's static files, which the
// compiled frontend reads beside itself. dist/ is emptied first: a source
// deleted since the last build must not live on there (a stale migration
// would still be run). Production runs `node dist/<role>/server.js`.
import { cpSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dist = fileURLToPath(new URL('../dist', import.meta.url))
rmSync(dist, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const res = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
if (res.status !== 0) process.exit(res.status ?? 1)
// The CDN ranges common/cdn.ts reads beside itself.
cpSync(fileURLToPath(new URL('../common/cdn-ranges', import.meta.url)), fileURLToPath(new URL('../dist/common/cdn-ranges', import.meta.url)), { recursive: true })
cpSync(fileURLToPath(new URL('../frontend/assets', import.meta.url)), fileURLToPath(new URL('../dist/frontend/assets', import.meta.url)), { recursive: true })
