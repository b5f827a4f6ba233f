/**
 * Issue 24: the CDN vocabulary — the shipped ranges (dated, sourced, parsed
 * into the default trust) and the client fields of each provider.
 */
import t from 'tap'
import { cdnIdentity, shippedRanges, visitorFromField } from '../../common/cdn.js'

t.test('the shipped ranges: dated, sourced, and what the trust is built from by default', async (t) => {
  for (const provider of ['cloudflare', 'fastly', 'cloudfront'] as const) {
    const shipped = shippedRanges(provider)
    t.match(shipped.takenOn, /^\d{4}-\d{2}-\d{2}$/, `${provider}: the date the list was taken`)
    t.ok(shipped.sources.every((s) => s.startsWith('https://')), `${provider}: where it comes from`)
    t.ok(shipped.ranges.length > 1)
    t.doesNotThrow(() => cdnIdentity({ CDN_PROVIDER: provider }), `${provider}: every range parses`)
  }
  t.ok(cdnIdentity({ CDN_PROVIDER: 'cloudflare' })!.trusts('104.16.1.1'), 'a Cloudflare edge address')
  t.ok(cdnIdentity({ CDN_PROVIDER: 'fastly' })!.trusts('151.101.1.1'), 'a Fastly edge address')
  t.ok(cdnIdentity({ CDN_PROVIDER: 'cloudfront' })!.trusts('13.32.1.1'), 'a CloudFront edge address')
  t.notOk(cdnIdentity({ CDN_PROVIDER: 'cloudflare' })!.trusts('127.0.0.1'), 'loopback is nobody\'s edge')
  t.equal(cdnIdentity({}), undefined, 'no provider, no CDN')
})

t.test('client fields: one address, or nobody', async (t) => {
  t.equal(visitorFromField('cloudflare', '198.51.100.1'), '198.51.100.1')
  t.equal(visitorFromField('fastly', ' 2001:db8::1 '), '2001:db8::1')
  t.equal(visitorFromField('cloudfront', '198.51.100.1:443'), '198.51.100.1')
  t.equal(visitorFromField('cloudfront', '198.51.100.1'), undefined, 'CloudFront always names a port')
  t.equal(visitorFromField('cloudflare', '198.51.100.1, 10.0.0.1'), undefined, 'a list is not one address')
  t.equal(visitorFromField('cloudflare', undefined), undefined)
})
