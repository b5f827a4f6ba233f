import t from 'tap'
import { parseHttpDate, canonicalCacheControl, parseSfDictionary, targetedCacheControl, deltaSeconds } from '../../cache/response-fields.js'
import { evaluateResponse, policyClassFor, targetedFields } from '../../cache/freshness.js'
import { FakeClock } from './fixtures.js'

t.test('parseHttpDate: the three RFC 9110 §5.6.7 formats and nothing else', async (t) => {
  const when = Date.UTC(1994, 10, 6, 8, 49, 37)
  t.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), when, 'IMF-fixdate')
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(2026, 0, 1)), when, 'rfc850 (two-digit year, past century)')
  t.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), when, 'asctime')
  const invalid = [
    'Sun, 06 Nov 1994 00:00:00 UTC', // UTC instead of GMT
    'Sun 06 Nov 1994 08:49:37 GMT', // no comma
    'Sun,  06 Nov 1994 08:49:37 GMT', // double space
    'Sun, 06-Nov-1994 08:49:37 GMT', // dashes in an IMF-fixdate
    'Sun, 06 Nov 1994 8:49:37 GMT', // one-digit hour
    'sun, 06 nov 1994 08:49:37 gmt', // case-sensitive
    'Sun, 31 Feb 1994 08:49:37 GMT', // no such day
    'Sun, 06 Nov 1994 24:00:00 GMT',
    '0', '-1', '', '1994-11-06T08:49:37Z', 'Sun, 06 Nov 1994 08:49:37 GMT '
  ]
  for (const v of invalid) t.ok(Number.isNaN(parseHttpDate(v)), JSON.stringify(v))
})

t.test('deltaSeconds and Cache-Control canonical form (RFC 9111 §1.2.2, §5.2)', async (t) => {
  t.equal(deltaSeconds('7200'), 7200)
  t.equal(deltaSeconds('7200.0'), undefined)
  t.equal(deltaSeconds('-1'), undefined)
  t.equal(deltaSeconds('99999999999'), 2147483648)
  t.equal(canonicalCacheControl('No-StOrE, Max-Age=60'), 'no-store, max-age=60')
  t.equal(canonicalCacheControl('max-age=60.5, max-age=600'), 'max-age=0', 'first occurrence wins; an invalid lifetime means stale')
})

t.test('structured-field dictionaries (RFC 8941) and CDN-Cache-Control (RFC 9213)', async (t) => {
  t.same(Object.fromEntries(parseSfDictionary('max-age=60, stale-if-error=300, private')!), { 'max-age': 60, 'stale-if-error': 300, private: true })
  t.same(Object.fromEntries(parseSfDictionary('a=(1 2);x, b=?0, c="s\\"q", d=tok/en, e=:AQID:, f=1.5;p=1')!),
    { a: [1, 2], b: false, c: 's"q', d: { token: 'tok/en' }, e: 'AQID', f: 1.5 })
  for (const bad of ['Max-Age=60', 'max-age=60 garbage', 'max-age=60,', 'max-age==60', 'max-age=1234567890123456', '"x"', 'a=1,,b=2', 'max-age=6 0', 'a="unterminated'])
    t.equal(parseSfDictionary(bad), null, JSON.stringify(bad))
  t.equal(targetedCacheControl('max-age=60, no-store'), 'max-age=60, no-store')
  t.equal(targetedCacheControl('max-age="60", must-revalidate'), 'must-revalidate', 'a member of the wrong type is dropped')
  t.equal(targetedCacheControl('max-age=60 junk'), undefined)
})

t.test('issue 10: freshness inputs are read strictly', async (t) => {
  const clock = new FakeClock()
  const P = policyClassFor(clock)
  const now = clock.now()
  const date = new Date(now).toUTCString()
  const ev = (headers: Record<string, string>, edge = false) => evaluateResponse(P, { method: 'GET', url: '/', headers: { host: 'a' } }, { status: 200, headers: { date, ...headers } }, now, now, { graceSeconds: 0, defaultTtlSeconds: 0, targets: targetedFields(edge) }, false)
  const inAnHour = new Date(now + 3600_000)
  const valid = inAnHour.toUTCString()
  t.equal(ev({ expires: valid }).freshUntil, now + 3600_000, 'a valid Expires')
  const d = inAnHour.toUTCString() // e.g. "Tue, 01 Jan 2030 01:00:00 GMT"
  // UTC instead of GMT, no comma, a double space, dashes, a one-digit hour (the hour here is 01).
  const invalid = [d.replace('GMT', 'UTC'), d.replace(',', ''), d.replace(' ', '  '), d.replace(/ (\d\d) (\w{3}) (\d{4})/, ' $1-$2-$3'), d.replace(/ 01:00:00 /, ' 1:00:00 ')]
  for (const v of invalid) {
    t.not(v, d)
    const f = ev({ expires: v })
    t.ok(f.storable, `stored: ${v}`)
    t.equal(f.freshUntil, now, `invalid Expires ${JSON.stringify(v)} means already expired (RFC 9111 §5.3)`)
  }
  t.equal(ev({ 'cache-control': 'max-age=3600', age: '7200.0' }).freshUntil, now + 3600_000, 'Age: 7200.0 is not delta-seconds: ignored (§5.1)')
  t.equal(ev({ 'cache-control': 'max-age=3600', age: '7200' }).freshUntil, now, 'a valid Age still counts')
  t.notOk(ev({ 'cache-control': 'No-StOrE, max-age=60' }).storable, 'directive names are case-insensitive (§5.2)')
  t.equal(ev({ 'cache-control': 'Max-Age=60' }).freshUntil, now + 60_000)
  t.equal(ev({ 'cache-control': 'PUBLIC, S-MAXAGE=30, max-age=600' }).freshUntil, now + 30_000)
  // An edge node (CACHE_EDGE) obeys CDN-Cache-Control; a tier node obeys its own field and passes CDN-Cache-Control on (RFC 9213 §2.1, §3).
  t.notOk(ev({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60 junk' }, true).storable, 'an invalid CDN-Cache-Control is ignored (RFC 9213 §2.1): no-store holds')
  t.notOk(ev({ 'cache-control': 'no-store', 'cdn-cache-control': 'Max-Age=60' }, true).storable, 'upper-case keys are not a valid dictionary')
  t.ok(ev({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60' }, true).storable, 'a valid one still overrides Cache-Control at the edge')
  t.notOk(ev({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60' }).storable, 'a tier node does not take the CDN\'s field for its own')
  t.notOk(ev({ 'cache-control': 'no-store', 'flashcrowd-cache-control': 'max-age=60 junk' }).storable, 'an invalid field of its own is ignored too')
  t.ok(ev({ 'cache-control': 'no-store', 'flashcrowd-cache-control': 'max-age=60' }).storable, 'its own valid field overrides Cache-Control')
})
