import t from 'tap'
import { escapeHtml, html, raw, SafeHtml } from '../../frontend/html.js'
import { cacheControl, ifNoneMatchHits, POLICIES, strongEtag } from '../../frontend/cache-headers.js'
import { checkSameOrigin } from '../../frontend/security.js'
import { parseForm, EVENT_RULES, isIsoDate } from '../../frontend/forms.js'

t.test('every interpolation is escaped unless it is SafeHtml', async (t) => {
  const payload = `<script>alert("x")</script>'&`
  t.equal(html`<p title="${payload}">${payload}</p>`.value, '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&amp;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&amp;</p>')
  t.equal(html`<ul>${['<a>', html`<li>${'<b>'}</li>`]}</ul>`.value, '<ul>&lt;a&gt;<li>&lt;b&gt;</li></ul>', 'arrays: strings escaped, templates kept')
  t.equal(html`${null}${undefined}${false}${true}${0}`.value, '0')
  t.equal(html`${raw('<em>trusted</em>')}`.value, '<em>trusted</em>')
  t.ok(html`x` instanceof SafeHtml)
  t.equal(escapeHtml('plain'), 'plain')
  // A look-alike object is not trusted: only real SafeHtml instances pass through.
  t.equal(html`${{ value: '<b>' } as unknown as string}`.value, '[object Object]')
})

t.test('cache header helpers', async (t) => {
  t.equal(cacheControl(POLICIES.page), 'public, max-age=0, s-maxage=300, stale-while-revalidate=60, stale-if-error=86400')
  t.equal(cacheControl(POLICIES.notFound), 'public, max-age=0, s-maxage=30')
  const etag = strongEtag('hello')
  t.match(etag, /^"[A-Za-z0-9_-]{27}"$/)
  t.not(strongEtag('hello!'), etag)
  t.ok(ifNoneMatchHits(etag, etag))
  t.ok(ifNoneMatchHits(`"a", W/${etag}`, etag), 'weak comparison for If-None-Match')
  t.ok(ifNoneMatchHits('*', etag))
  t.notOk(ifNoneMatchHits('"other"', etag))
  t.notOk(ifNoneMatchHits(undefined, etag))
})

t.test('same-origin check', async (t) => {
  const req = (headers: Record<string, string>, host = 'site.example') => ({ headers, host, protocol: 'https' as const })
  t.ok(checkSameOrigin(req({ 'sec-fetch-site': 'same-origin' }), { allowedOrigins: [] }).ok)
  t.notOk(checkSameOrigin(req({ 'sec-fetch-site': 'cross-site', origin: 'https://site.example' }), { allowedOrigins: [] }).ok)
  t.ok(checkSameOrigin(req({ origin: 'https://site.example' }), { allowedOrigins: [] }).ok)
  t.ok(checkSameOrigin(req({ origin: 'http://site.example:80' }, 'site.example:80'), { allowedOrigins: [] }).ok)
  t.notOk(checkSameOrigin(req({ origin: 'https://evil.example' }), { allowedOrigins: [] }).ok)
  t.ok(checkSameOrigin(req({ origin: 'https://hour.example' }), { allowedOrigins: ['https://hour.example'] }).ok)
  t.notOk(checkSameOrigin(req({ origin: 'null' }), { allowedOrigins: [] }).ok)
  t.notOk(checkSameOrigin(req({}), { allowedOrigins: [] }).ok)
})

t.test('form parsing', async (t) => {
  const f = parseForm({ organizer: '  Ada  ', email: 'a@b.org', school: 'S', country: 'US', city: 'C', expectedParticipants: '100001', eventDate: '2026-02-29', x: 'y' }, EVENT_RULES)
  t.equal(f.values.organizer, 'Ada')
  t.same(f.unknown, ['x'])
  // Names every object inherits are not fields either (regression: `key in rules`).
  t.same(parseForm({ author: 'a', body: 'b', constructor: '1', toString: '2', hasOwnProperty: '3' }, { author: { label: 'Name', min: 1, max: 5 }, body: { label: 'Comment', min: 1, max: 5 } }).unknown, ['constructor', 'toString', 'hasOwnProperty'])
  t.match(f.errors.expectedParticipants, /1 to 100,000/)
  t.match(f.errors.eventDate, /YYYY-MM-DD/)
  t.ok(isIsoDate('2028-02-29'))
  t.notOk(isIsoDate('2026-13-01'))
  const arr = parseForm({ author: ['a', 'b'] }, { author: { label: 'Name', min: 1, max: 5 } })
  t.match(arr.errors.author, /one value/)
  t.equal(parseForm({ author: '🎉🎉ü' }, { author: { label: 'Name', min: 1, max: 5 } }).errors.author, undefined, 'lengths count characters, not bytes')
})
