/**
 * Static assets: the hand-written files in frontend/assets/ are fingerprinted
 * at start-up (`site.css` → `site.<hash>.css`), written once with gzip and
 * brotli variants beside them, and served by @fastify/static under /assets/
 * as immutable: a new version is a new name, so browsers and caches may keep
 * each one for a year without ever revalidating.
 */
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, writeFile, access } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib'
import fp from 'fastify-plugin'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import { IMMUTABLE } from './cache-headers.js'
import type { AssetUrls } from './views/layout.js'

export const SOURCE_DIR = fileURLToPath(new URL('./assets/', import.meta.url))
const COMPRESSIBLE = /\.(css|js|svg|txt|json|xml|html)$/
/** Below this, compression headers cost about what they save. */
const MIN_COMPRESS_BYTES = 512

export interface BuiltAssets extends AssetUrls {
  dir: string
  files: Map<string, { hashed: string, bytes: number }>
}

async function exists (file: string): Promise<boolean> {
  try { await access(file); return true } catch { return false }
}

/** Writes atomically, so several processes building the same assets never serve a half-written file. */
async function writeOnce (file: string, data: Buffer): Promise<void> {
  if (await exists(file)) return
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
  await writeFile(tmp, data)
  await rename(tmp, file)
}

export async function buildAssets (options: { sourceDir?: string, outDir?: string } = {}): Promise<BuiltAssets> {
  const sourceDir = options.sourceDir ?? SOURCE_DIR
  const outDir = options.outDir ?? path.join(tmpdir(), `flashcrowd-assets-${process.getuid?.() ?? 'user'}`)
  await mkdir(outDir, { recursive: true })
  const files = new Map<string, { hashed: string, bytes: number }>()
  for (const name of (await readdir(sourceDir)).sort()) {
    const data = await readFile(path.join(sourceDir, name))
    const hash = createHash('sha256').update(data).digest('base64url').replace(/[-_]/g, '').slice(0, 12)
    const ext = path.extname(name)
    const hashed = `${path.basename(name, ext)}.${hash}${ext}`
    await writeOnce(path.join(outDir, hashed), data)
    if (COMPRESSIBLE.test(name) && data.length >= MIN_COMPRESS_BYTES) {
      await writeOnce(path.join(outDir, `${hashed}.gz`), gzipSync(data, { level: 9 }))
      await writeOnce(path.join(outDir, `${hashed}.br`), brotliCompressSync(data, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: data.length } }))
    }
    files.set(name, { hashed, bytes: data.length })
  }
  return {
    dir: outDir,
    files,
    url (name: string) {
      const f = files.get(name)
      if (!f) throw new Error(`unknown asset ${name}: add it to frontend/assets/`)
      return `/assets/${f.hashed}`
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance { assets: BuiltAssets }
}

export const assetsPlugin = fp(async function assetsPlugin (app: FastifyInstance, opts: { assets: BuiltAssets }) {
  app.decorate('assets', opts.assets)
  await app.register(fastifyStatic, {
    root: opts.assets.dir,
    prefix: '/assets/',
    decorateReply: false,
    preCompressed: true,
    cacheControl: false,
    index: false,
    list: false,
    wildcard: false,
    // Only fingerprinted names are served (never the .tmp of a writer in progress).
    allowedPath: (pathName) => /^\/[A-Za-z0-9-]+\.[A-Za-z0-9]{12}\.[a-z0-9]+$/.test(pathName),
    setHeaders (res) {
      res.header('cache-control', IMMUTABLE)
    }
  })
}, { name: 'flashcrowd-frontend-assets', fastify: '5.x' })
