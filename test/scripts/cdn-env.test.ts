/** Issue 24: what npm start and npm run cluster hand each role for a CDN in front (scripts/cdn-env.ts). */
import t from 'tap'
import { cdnEnv } from '../../scripts/cdn-env.js'

t.test('no CDN: nothing changes, no purger', async (t) => {
  const c = cdnEnv({}, {})
  t.same(c.cache, {})
  t.same(c.frontend, {})
  t.equal(c.purger, undefined)
})

t.test('flashcrowd edges: the caches believe them, pages live long at the edge, a purger purges them', async (t) => {
  const c = cdnEnv({ CDN_PROVIDER: 'flashcrowd', CDN_TRUSTED_RANGES: '10.0.0.0/8', CDN_FLASHCROWD_URLS: 'http://10.0.0.5:8080, http://10.0.0.6:8080' }, {})
  t.same(c.cache, { CDN_PROVIDER: 'flashcrowd', CDN_TRUSTED_RANGES: '10.0.0.0/8' })
  t.same(c.frontend, { CDN_PROVIDER: 'flashcrowd', FRONTEND_CDN_MAX_AGE: '300' })
  t.same(c.purger, { CDN_FLASHCROWD_URLS: 'http://10.0.0.5:8080,http://10.0.0.6:8080' })
})

t.test('a commercial CDN: purged only with its credentials; without them pages get the short lifetime', async (t) => {
  const without = cdnEnv({ CDN_PROVIDER: 'cloudflare' }, {})
  t.equal(without.purger, undefined)
  t.same(without.frontend, { CDN_PROVIDER: 'cloudflare' }, 'FRONTEND_CDN_MAX_AGE stays at its few seconds')
  t.match(without.summary, /no cloudflare credentials/)
  const withCredentials = cdnEnv({ CDN_PROVIDER: 'cloudflare' }, { PURGER_CLOUDFLARE_ZONE_ID: 'z', PURGER_CLOUDFLARE_API_TOKEN: 'k', PURGER_CLOUDFLARE_TAGS_PER_REQUEST: '100', OTHER: 'x' })
  t.same(withCredentials.purger, { PURGER_CLOUDFLARE_ZONE_ID: 'z', PURGER_CLOUDFLARE_API_TOKEN: 'k', PURGER_CLOUDFLARE_TAGS_PER_REQUEST: '100', CDN_PROVIDER: 'cloudflare' })
  t.equal(withCredentials.frontend.FRONTEND_CDN_MAX_AGE, '300')
})
