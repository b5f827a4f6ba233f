/**
 * `npm run bench:render`: render throughput of news article pages.
 *
 * - cold: the render cache disabled, so every request reads the database and
 *   renders the template (cycling over many articles so requests do not
 *   share renders);
 * - hit: the same requests answered from the render cache;
 * - reference: a plain Fastify route in this process returning a precomputed
 *   string of the same size (the ceiling for "send a page").
 * Interleaved rounds, medians of req/s and p99 latency, ratios to the reference.
 *
 * Database: the embedded PGlite by default; a throwaway database on
 * DATABASE_URL's server when it is set. Everything listens on 127.0.0.1.
 */
import autocannon from 'autocannon'
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import { MemoryBus } from '../common/bus.js'
import { createDatabase } from '../common/db.js'
import { startEmbeddedDatabase } from '../common/embedded-db.js'
import { seed } from '../common/seed.js'
import { migrateToLatest } from '../migrations/migrator.js'
import { loadFrontendConfig } from '../frontend/config.js'
import { buildApp } from '../frontend/app.js'
import { createBackendClient } from '../frontend/backend-client.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20)
const ARTICLES = 200

async function database (): Promise<{ url: string, kind: string, close: () => Promise<void> }> {
  const admin = process.env.DATABASE_URL
  if (!admin) {
    const e = await startEmbeddedDatabase({ dataDir: 'memory://' })
    return { url: e.url, kind: 'embedded PGlite', close: e.close }
  }
  const name = `fc_bench_${process.pid}`
  const c = new pg.Client({ connectionString: admin }); await c.connect(); await c.query(`create database ${name}`); await c.end()
  const url = new URL(admin); url.pathname = `/${name}`
  return {
    url: url.toString(),
    kind: 'PostgreSQL',
    async close () { const d = new pg.Client({ connectionString: admin }); await d.connect(); await d.query(`drop database if exists ${name} with (force)`); await d.end() }
  }
}

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

interface Run { rps: number, p99: number }

function run (base: string, paths: string[]): Promise<Run> {
  let i = 0
  return new Promise((resolve, reject) => {
    autocannon({
      url: base,
      connections: CONNECTIONS,
      duration: SECONDS,
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: paths[i++ % paths.length] }) }]
    }, (err, result) => {
      if (err) return reject(err)
      if (result.non2xx > 0 || result.errors > 0) return reject(new Error(`${result.non2xx} non-2xx answers, ${result.errors} errors`))
      resolve({ rps: result.requests.average, p99: result.latency.p99 })
    })
  })
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function main () {
  const db = await database()
  const setup = createDatabase({ url: db.url, max: 2, statementTimeoutMs: 120_000 })
  await migrateToLatest(setup.db)
  await seed(setup.db, { sizes: { tutorials: 60, news: ARTICLES, comments: 6000, events: 500, completions: 500 } })
  const slugs = (await setup.db.selectFrom('news').select('slug').orderBy('id').execute()).map((r) => `/news/${r.slug}`)
  await setup.close()

  const apps: FastifyInstance[] = []
  const handles: Array<{ close: () => Promise<void> }> = []
  const frontend = async (cacheBytes: number) => {
    const config = loadFrontendConfig({ LOG_LEVEL: 'silent', DATABASE_READ_URL: db.url, FRONTEND_RENDER_CACHE_BYTES: String(cacheBytes) })
    const handle = createDatabase({ url: db.url, readOnly: true, max: 10 })
    handles.push(handle)
    const app = await buildApp({ config, db: handle, bus: new MemoryBus(), backend: createBackendClient({ urls: ['http://127.0.0.1:9'], timeoutMs: 1000 }), logger: false })
    apps.push(app)
    return listen(app)
  }
  const cold = await frontend(0)
  const warm = await frontend(256 * 1024 * 1024)

  // The reference page: exactly as many bytes as an average rendered article.
  const sample = await Promise.all(slugs.slice(0, 20).map(async (p) => (await fetch(warm + p)).text()))
  const bytes = Math.round(sample.reduce((n, s) => n + Buffer.byteLength(s), 0) / sample.length)
  const body = 'x'.repeat(bytes)
  const reference = Fastify({ logger: false })
  reference.get('/news/:slug', async (_req, reply) => reply.type('text/html; charset=utf-8').send(body))
  apps.push(reference)
  const ref = await listen(reference)

  for (const p of slugs) await fetch(warm + p) // fill the render cache
  await run(cold, slugs) // warm up JIT and pools
  const results: Record<'reference' | 'hit' | 'cold', Run[]> = { reference: [], hit: [], cold: [] }
  for (let r = 0; r < ROUNDS; r++) {
    results.reference.push(await run(ref, slugs))
    results.hit.push(await run(warm, slugs))
    results.cold.push(await run(cold, slugs))
  }
  const refRps = median(results.reference.map((x) => x.rps))
  console.log(`news article pages (${bytes} bytes, ${ARTICLES} articles, ${db.kind}), ${CONNECTIONS} connections, ${ROUNDS} rounds × ${SECONDS} s, medians:`)
  console.log('                       req/s     p99 ms   vs reference')
  for (const name of ['reference', 'hit', 'cold'] as const) {
    const rps = median(results[name].map((x) => x.rps))
    const p99 = median(results[name].map((x) => x.p99))
    const label = { reference: 'reference (static str)', hit: 'render-cache hit', cold: 'cold render' }[name]
    console.log(`${label.padEnd(22)} ${rps.toFixed(0).padStart(8)} ${p99.toFixed(1).padStart(9)}   ${(rps / refRps).toFixed(2)}×`)
  }
  for (const app of apps) await app.close()
  for (const h of handles) await h.close()
  await db.close()
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })
