/**
 * The CDN in front of the tier (design §2.10, §7 "CDN in front"): which
 * provider, which of its addresses are believed, and the field each one
 * names the visitor in.
 *
 * A CDN connects to us from its own addresses, so without this every visitor
 * would be one of a handful of edge addresses and the write limits would
 * lump whole countries together. Each provider writes the address it saw in
 * a field of its own (Cloudflare `CF-Connecting-IP`, Fastly
 * `Fastly-Client-IP`, CloudFront `CloudFront-Viewer-Address`; a flashcrowd
 * edge cache the `X-Forwarded-For` entry it appends). That field is believed
 * only when the request comes from the provider's published ranges
 * (`CDN_TRUSTED_RANGES`, default the list shipped in common/cdn-ranges/);
 * from anywhere else it is somebody typing a header, and it is ignored.
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { Type, type Static } from '@sinclair/typebox'
import proxyAddr from '@fastify/proxy-addr'
import { list, UrlList } from './config.js'

export const CDN_PROVIDERS = ['cloudflare', 'fastly', 'cloudfront', 'flashcrowd'] as const
export type CdnProvider = typeof CDN_PROVIDERS[number]

/** The request field each provider names the visitor in (lower case, as node has it). */
export const CLIENT_FIELDS: Record<CdnProvider, string> = {
  cloudflare: 'cf-connecting-ip',
  fastly: 'fastly-client-ip',
  cloudfront: 'cloudfront-viewer-address',
  flashcrowd: 'x-forwarded-for'
}

/** The response field each provider reads purge tags from (RFC-less, provider conventions). */
export const TAG_FIELDS: Record<CdnProvider, string | undefined> = {
  // Cloudflare reads Cache-Tag (comma-separated) and removes it before the visitor sees it.
  cloudflare: 'cache-tag',
  // Fastly and flashcrowd read Surrogate-Key (space-separated), which every page already carries.
  fastly: undefined,
  flashcrowd: undefined,
  // CloudFront has no tags: it invalidates paths (purger/key-paths.ts).
  cloudfront: undefined
}

const CIDR_LIST = '^\\s*[0-9a-fA-F.:/]+(\\s*,\\s*[0-9a-fA-F.:/]+)*\\s*$'

/** The identity half: every role that receives the CDN's requests (the cache). */
export const CdnIdentityEnv = {
  CDN_PROVIDER: Type.Optional(Type.Union(CDN_PROVIDERS.map((p) => Type.Literal(p)), {
    description: 'The CDN in front of the tier: cloudflare, fastly, cloudfront, or flashcrowd (edge caches of this project). Its client field (CF-Connecting-IP, Fastly-Client-IP, CloudFront-Viewer-Address, the X-Forwarded-For an edge cache writes) names the visitor when the request comes from CDN_TRUSTED_RANGES. Unset: no CDN.'
  })),
  CDN_TRUSTED_RANGES: Type.Optional(Type.String({
    pattern: CIDR_LIST,
    description: 'Addresses or CIDRs (comma-separated) the CDN connects from; its client field is believed only from these. Default: the provider\'s published list shipped in common/cdn-ranges/ (see its date; `npm run cdn-ranges` refreshes it). Required for flashcrowd (your edge caches\' addresses).'
  }))
}

/** The purge half: which flashcrowd edges the purger purges. */
export const CdnPurgeEnv = {
  CDN_FLASHCROWD_URLS: Type.Optional(UrlList('Edge caches (flashcrowd cache nodes whose upstream is this tier) the purger purges after every write, comma-separated base URLs; they take PURGE with the ADMIN_TOKEN.'))
}

export type CdnIdentityConfig = Static<ReturnType<typeof Type.Object<typeof CdnIdentityEnv>>>

export interface ShippedRanges {
  provider: CdnProvider
  /** When the list was written into the repository (YYYY-MM-DD). */
  takenOn: string
  sources: string[]
  note: string
  ranges: string[]
}

/** The list shipped for a provider (none for flashcrowd: those are your own edges). */
export function shippedRanges (provider: Exclude<CdnProvider, 'flashcrowd'>): ShippedRanges {
  return JSON.parse(readFileSync(new URL(`./cdn-ranges/${provider}.json`, import.meta.url), 'utf8')) as ShippedRanges
}

/**
 * The visitor a CDN's field names, or undefined when the field is missing or
 * not one address. CloudFront-Viewer-Address is `address:port` (IPv6 without
 * brackets: the port is after the last colon).
 */
export function visitorFromField (provider: Exclude<CdnProvider, 'flashcrowd'>, value: string | string[] | undefined): string | undefined {
  // Two copies of the field: somebody added one; believe neither.
  if (typeof value !== 'string') return undefined
  let v = value.trim()
  if (provider === 'cloudfront') {
    const colon = v.lastIndexOf(':')
    if (colon <= 0 || !/^\d{1,5}$/.test(v.slice(colon + 1))) return undefined
    v = v.slice(0, colon)
  }
  return isIP(v) !== 0 ? v : undefined
}

export interface CdnIdentity {
  provider: CdnProvider
  /** Is this address one of the CDN's? */
  trusts (address: string): boolean
  /** The provider's client field name (lower case). */
  field: string
}

/**
 * The identity settings as one object; undefined without CDN_PROVIDER.
 * Throws a TypeError naming a malformed range, or when flashcrowd has none.
 */
export function cdnIdentity (config: CdnIdentityConfig): CdnIdentity | undefined {
  const provider = config.CDN_PROVIDER
  if (provider === undefined) return undefined
  const configured = list(config.CDN_TRUSTED_RANGES)
  if (configured.length === 0 && provider === 'flashcrowd') {
    throw new TypeError('CDN_TRUSTED_RANGES: required with CDN_PROVIDER=flashcrowd (the addresses your edge caches connect from)')
  }
  const ranges = configured.length > 0 ? configured : shippedRanges(provider as Exclude<CdnProvider, 'flashcrowd'>).ranges
  let compiled: (address: string, hop: number) => boolean
  try {
    compiled = proxyAddr.compile(ranges)
  } catch (err) {
    throw new TypeError(`CDN_TRUSTED_RANGES: ${(err as Error).message}`)
  }
  return { provider, field: CLIENT_FIELDS[provider], trusts: (address) => compiled(address, 0) }
}

/**
 * The visitor behind a request that came from the CDN's address `edge`, which
 * sits `hopsWalked` entries into the chain (1: the socket peer; more: behind
 * trusted load balancers, each of which appended one X-Forwarded-For entry).
 * Undefined when the CDN named nobody believable: then the edge itself is the
 * visitor, as without a CDN.
 */
export function cdnVisitor (cdn: CdnIdentity, headers: Record<string, string | string[] | undefined>, hopsWalked: number): string | undefined {
  if (cdn.provider !== 'flashcrowd') return visitorFromField(cdn.provider, headers[cdn.field])
  // A flashcrowd edge appended the address it saw: the X-Forwarded-For entry
  // just left of the ones our own load balancers appended.
  const raw = headers['x-forwarded-for']
  const entries = (Array.isArray(raw) ? raw.join(',') : raw ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  const entry = entries[entries.length - hopsWalked]
  return entry !== undefined && isIP(entry) !== 0 ? entry : undefined
}
