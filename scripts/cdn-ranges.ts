/**
 * `npm run cdn-ranges [-- --write]`: fetches the CDN providers' published
 * address lists from their official URLs and compares them with the copies
 * shipped in common/cdn-ranges/ (which CDN_TRUSTED_RANGES defaults to);
 * `--write` replaces the copies, dated today. Run by an operator with
 * internet access (never by the tests); review the diff before committing.
 *
 *   Cloudflare  https://www.cloudflare.com/ips-v4 and /ips-v6 (one CIDR a line)
 *   Fastly      https://api.fastly.com/public-ip-list ({ addresses, ipv6_addresses })
 *   CloudFront  https://d7uri8nf7uskq.cloudfront.net/tools/list-cloudfront-ips
 *               ({ CLOUDFRONT_GLOBAL_IP_LIST, CLOUDFRONT_REGIONAL_EDGE_IP_LIST }),
 *               plus the CLOUDFRONT service's IPv6 prefixes of
 *               https://ip-ranges.amazonaws.com/ip-ranges.json
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { ShippedRanges } from '../common/cdn.js'

type Provider = ShippedRanges['provider']

async function text (url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000) })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return res.text()
}

const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean)

const FETCHERS: Record<Exclude<Provider, 'flashcrowd'>, { sources: string[], fetch: () => Promise<string[]> }> = {
  cloudflare: {
    sources: ['https://www.cloudflare.com/ips-v4', 'https://www.cloudflare.com/ips-v6'],
    fetch: async () => [...lines(await text('https://www.cloudflare.com/ips-v4')), ...lines(await text('https://www.cloudflare.com/ips-v6'))]
  },
  fastly: {
    sources: ['https://api.fastly.com/public-ip-list'],
    fetch: async () => {
      const list = JSON.parse(await text('https://api.fastly.com/public-ip-list')) as { addresses: string[], ipv6_addresses: string[] }
      return [...list.addresses, ...list.ipv6_addresses]
    }
  },
  cloudfront: {
    sources: ['https://d7uri8nf7uskq.cloudfront.net/tools/list-cloudfront-ips', 'https://ip-ranges.amazonaws.com/ip-ranges.json'],
    fetch: async () => {
      const cf = JSON.parse(await text('https://d7uri8nf7uskq.cloudfront.net/tools/list-cloudfront-ips')) as Record<string, string[]>
      const aws = JSON.parse(await text('https://ip-ranges.amazonaws.com/ip-ranges.json')) as { ipv6_prefixes: Array<{ ipv6_prefix: string, service: string }> }
      return [...(cf.CLOUDFRONT_GLOBAL_IP_LIST ?? []), ...(cf.CLOUDFRONT_REGIONAL_EDGE_IP_LIST ?? []), ...aws.ipv6_prefixes.filter((p) => p.service === 'CLOUDFRONT').map((p) => p.ipv6_prefix)]
    }
  }
}

const write = process.argv.includes('--write')
let failed = false
for (const [provider, source] of Object.entries(FETCHERS) as Array<[Exclude<Provider, 'flashcrowd'>, typeof FETCHERS.fastly]>) {
  const file = fileURLToPath(new URL(`../common/cdn-ranges/${provider}.json`, import.meta.url))
  const shipped = JSON.parse(readFileSync(file, 'utf8')) as ShippedRanges
  let ranges: string[]
  try {
    ranges = [...new Set(await source.fetch())]
  } catch (err) {
    console.error(`${provider}: ${(err as Error).message}`)
    failed = true
    continue
  }
  const added = ranges.filter((r) => !shipped.ranges.includes(r))
  const removed = shipped.ranges.filter((r) => !ranges.includes(r))
  console.log(`${provider}: ${ranges.length} ranges published; ${added.length} new, ${removed.length} gone since ${shipped.takenOn}`)
  for (const r of added) console.log(`  + ${r}`)
  for (const r of removed) console.log(`  - ${r}`)
  if (write && ranges.length > 0) {
    const next: ShippedRanges = { provider, takenOn: new Date().toISOString().slice(0, 10), sources: source.sources, note: `Downloaded from the sources above by \`npm run cdn-ranges -- --write\` on takenOn.`, ranges }
    writeFileSync(file, JSON.stringify(next, null, 2) + '\n')
  }
}
process.exit(failed ? 1 : 0)
