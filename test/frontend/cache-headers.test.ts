/**
 * Issue 24: the CDN's own lifetime (CDN-Cache-Control, RFC 9213 §3) and
 * Cloudflare's tag field on pages; never on what no shared cache may keep.
 */
import t from 'tap'
import { POLICIES, cdnCacheControl } from '../../frontend/cache-headers.js'
import { cdnTagField } from '../../frontend/config.js'
import { createTestDatabase } from '../helpers/database.js'
import { startFrontend } from './helpers.js'

t.test('the CDN lifetime: at most FRONTEND_CDN_MAX_AGE for what a write can change, never stale-while-revalidate', async (t) => {
  t.equal(cdnCacheControl(POLICIES.page, 5), 'max-age=5, stale-if-error=86400')
  t.equal(cdnCacheControl(POLICIES.page, 3600), 'max-age=300, stale-if-error=86400', 'never longer than our own caches keep it')
  t.equal(cdnCacheControl(POLICIES.certificate, 5), 'max-age=86400, stale-if-error=604800', 'a certificate never changes')
  t.equal(cdnCacheControl(POLICIES.notFound, 5), 'max-age=5')
  t.equal(cdnTagField({ CDN_PROVIDER: 'cloudflare' }), 'cache-tag')
  t.equal(cdnTagField({ CDN_PROVIDER: 'fastly' }), undefined, 'Fastly reads Surrogate-Key')
  t.equal(cdnTagField({}), undefined)
})

t.test('pages carry CDN-Cache-Control and, for Cloudflare, Cache-Tag; private answers carry neither lifetime', async (t) => {
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const { app } = await startFrontend(t, database.url, { env: { CDN_PROVIDER: 'cloudflare', FRONTEND_CDN_MAX_AGE: '7' } })
  const page = await app.inject({ url: '/news' })
  t.equal(page.statusCode, 200)
  t.equal(page.headers['cdn-cache-control'], 'max-age=7, stale-if-error=86400')
  t.match(page.headers['cache-control'], /s-maxage=300/, 'our caches keep their own lifetime')
  t.equal(page.headers['cache-tag'], String(page.headers['surrogate-key']).split(' ').join(','), 'the same keys, comma-separated for Cloudflare')
  const author = await app.inject({ url: '/news?rev=0/1' })
  t.equal(author.headers['cdn-cache-control'], undefined, 'an author\'s own view has no CDN lifetime')
  t.match(author.headers['cache-control'], /no-store/)
})
