/**
 * Issue 24: visitors behind a simulated CDN. Requests reach the tier's cache
 * from "CDN edge" addresses (127.0.0.2, 127.0.0.3 = CDN_TRUSTED_RANGES,
 * CDN_PROVIDER=cloudflare) carrying CF-Connecting-IP with the visitor the
 * CDN saw. Through the real cache, frontend and backend: a classroom of 30
 * behind one school address gets 30 certificates; two schools are limited
 * separately; the same field sent from an address outside the CDN's ranges
 * (127.0.0.9) is ignored. The backend records the visitor it limited.
 */
import t from 'tap'
import { MemoryBus } from '../../common/bus.js'
import { createTestDatabase, openDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'
import { browserNonce, pool, startCacheBefore, startFrontend } from '../frontend/helpers.js'
import { requestFrom } from '../helpers/source-address.js'

const SCHOOL_A = '198.51.100.10'
const SCHOOL_B = '203.0.113.20'
const EDGES = ['127.0.0.2', '127.0.0.3']

t.test('behind a CDN: one certificate per pupil, one limit per school, forged fields ignored', async (t) => {
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const bus = new MemoryBus()
  const seen: string[] = []
  // Production-shaped limits, small enough to reach: 40 writes per visitor per hour.
  const backend = await startBackend(t, database.url, { BACKEND_RATE_LIMIT_MAX: '40', BACKEND_RATE_LIMIT_BURST: '40', BACKEND_RATE_LIMIT_WINDOW_S: '3600', BACKEND_RATE_LIMIT_SAME_MAX: '50', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' }, {
    bus,
    onRequest: (req) => { if (req.method === 'POST') seen.push(req.ip) }
  })
  const { app: frontend } = await startFrontend(t, database.url, { backendUrls: [backend.url], bus, env: { FRONTEND_BACKEND_TIMEOUT_MS: '15000' } })
  await frontend.listen({ host: '127.0.0.1', port: 0 })
  const cache = await startCacheBefore(t, frontend, bus, { CDN_PROVIDER: 'cloudflare', CDN_TRUSTED_RANGES: EDGES.join(',') })
  const base = cache.url()
  const rw = openDatabase(t, database)
  const tutorial = await rw.db.selectFrom('tutorials').select(['slug']).orderBy('id').executeTakeFirstOrThrow()

  let retried = 0
  /**
   * One pupil pressing "done", as the CDN forwards it: from an edge, naming
   * the visitor. A 503 ("nothing was saved, try again": the embedded
   * database on a loaded machine) is pressed again, as the page asks, with
   * the same form (same identity: it cannot write twice).
   */
  async function done (from: string, visitor: string | undefined, name: string) {
    const body = new URLSearchParams({ name, country: 'DE', form_nonce: browserNonce() }).toString()
    for (let attempt = 0; ; attempt++) {
      const res = await requestFrom(from, `${base}/tutorials/${tutorial.slug}/done`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, ...(visitor ? { 'cf-connecting-ip': visitor } : {}) },
        body
      })
      if (res.status === 503 && attempt < 5) { retried++; await new Promise((resolve) => setTimeout(resolve, 500)); continue }
      return { status: res.status, location: String(res.headers.location ?? '') }
    }
  }

  await t.test('a classroom of 30 behind one school address: 30 certificates', async (t) => {
    seen.length = 0
    const pupils = await pool(30, 5, (i) => done(EDGES[i % 2], SCHOOL_A, 'Anna'))
    t.same(pupils.map((p) => p.status), Array(30).fill(303), 'every pupil sent on to a certificate')
    if (retried > 0) t.comment(`${retried} presses answered 503 (nothing saved) and pressed again`)
    t.equal(new Set(pupils.map((p) => p.location.split('?')[0])).size, 30, '30 different certificates')
    t.ok(pupils.every((p) => p.location.includes('/certificates/')))
    t.same([...new Set(seen)], [SCHOOL_A], 'the backend saw the school, never the CDN\'s edges')
  })

  await t.test('two schools are limited separately', async (t) => {
    seen.length = 0
    // School A has used 30 of its 40: ten more go through, then it is limited.
    const a = await pool(15, 5, (i) => done(EDGES[i % 2], SCHOOL_A, `A${i}`))
    const refused = a.filter((r) => r.status !== 303)
    t.ok(refused.length >= 5, `school A is limited (${refused.length} of 15 refused)`)
    t.ok(refused.every((r) => r.status === 429), 'with 429')
    const b = await pool(15, 5, (i) => done(EDGES[i % 2], SCHOOL_B, `B${i}`))
    t.same(b.map((r) => r.status), Array(15).fill(303), 'school B, behind the same CDN edges, is not')
    t.same([...new Set(seen)].sort(), [SCHOOL_A, SCHOOL_B].sort())
  })

  await t.test('the CDN\'s field from an address outside its ranges is ignored', async (t) => {
    seen.length = 0
    // Claiming to be school A (which is limited): believed, this would be refused.
    const forged = await done('127.0.0.9', SCHOOL_A, 'Mallory')
    t.equal(forged.status, 303, 'limited as itself, not as school A')
    t.same(seen, ['127.0.0.9'], 'the backend saw the sender\'s own address')
    // And the CDN edge without the field is the visitor itself (nobody named).
    seen.length = 0
    t.equal((await done(EDGES[0], undefined, 'Edge')).status, 303)
    t.same(seen, [EDGES[0]])
  })
})
