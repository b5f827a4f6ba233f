/**
 * Cached objects: made from a storable response, sized against
 * CACHE_MAX_BYTES (design §2.7), and (de)serialised to travel between
 * processes. fetch.ts decides whether to store; this module only builds.
 */
import type CachePolicy from 'http-cache-semantics'
import type { CachedObject } from './store.js'
import { varyNamesOf } from './store.js'
import type { Freshness, PolicyClass, PolicyRequest } from './freshness.js'
import { buildHead } from './headers.js'
import { compressVariants, copyOut, isCompressible } from './compress.js'
import { variantKey } from './vary.js'
import { parseSurrogateKeys } from '../common/surrogate-keys.js'

/** Where the object comes from: the request's key parts and the client fields that select its variant. */
export interface ObjectSource {
  host: string
  url: string
  primary: string
  headers: Record<string, string | string[] | undefined>
  /** Keep Surrogate-Key in the delivered fields (a CDN in front purges by it). */
  deliverTags?: boolean
}

/** A body read in chunks, as one Buffer that owns its memory (no view pinning a larger slab). */
export function ownedBody (chunks: Buffer[], size: number): Buffer {
  if (chunks.length === 1) return copyOut(chunks[0])
  const out = Buffer.allocUnsafeSlow(size)
  let off = 0
  for (const c of chunks) { c.copy(out, off); off += c.length }
  return out
}

/** Bytes of a flat header record as stored (name, value and a little per-entry overhead). */
function recordBytes (h: Record<string, string>): number {
  let n = 0
  for (const k in h) n += k.length + h[k].length + 4
  return n
}

/** What a stored object is made of. */
export interface ObjectParts {
  source: ObjectSource
  status: number
  headers: Record<string, string>
  body: Buffer
  fresh: Freshness
  /** When its fetch started and its answer arrived (RFC 9111 §4.2.3). */
  requestTime: number
  responseTime: number
  /** The request as the policy keeps it (fetch.ts policyRequest). */
  policyReq: PolicyRequest
  /** The bodies of the object a 304 revalidated: its compressed variants are kept. */
  previous?: CachedObject['bodies']
  /** When its fetch started, in fetch.ts `nextSequence` order. */
  fetchSequence?: number
}

/** Builds the stored object from a storable response. */
export function makeObject (parts: ObjectParts): CachedObject {
  const { source: info, status, headers, body, fresh, requestTime, responseTime, policyReq, previous, fetchSequence = 0 } = parts
  const varyNames = varyNamesOf({ headers })
  const compressible = isCompressible(headers['content-type'], headers['content-encoding'], body.length, 1024 * 1024, headers['cache-control'])
  const bodies: CachedObject['bodies'] = { identity: body }
  // Compressed once per body: a revalidated object keeps the variants it had.
  if (compressible) Object.assign(bodies, previous?.gzip ? { gzip: previous.gzip, br: previous.br } : compressVariants(body))
  const headerBytes = recordBytes(headers)
  const lm = headers['last-modified'] !== undefined ? Date.parse(headers['last-modified']) : NaN
  const key = variantKey(info.primary, varyNames, info.headers)
  const tags = parseSurrogateKeys(headers['surrogate-key'])
  let tagBytes = 0
  for (const t of tags) tagBytes += t.length + 16
  // Everything the object keeps alive, so CACHE_MAX_BYTES bounds memory
  // (design §2.7): bodies; the stored fields, the prepared heads (arrays of
  // the same strings) and the policy's response fields (a copy when a
  // targeted field was substituted, freshness.ts); the request fields the
  // policy keeps (policyRequest); the key, primary key, host and URL strings
  // (separate flat strings once V8 has hashed them; the store's indexes refer
  // to the same ones); tags; and fixed bookkeeping (the object, its index
  // entries). Strings from node's parser are one byte per character.
  const stringBytes = key.length + info.primary.length + info.url.length + info.host.length
  const o: CachedObject = {
    key,
    primary: info.primary,
    host: info.host,
    url: info.url,
    status,
    headers,
    policy: fresh.policy,
    bodies,
    compressible,
    etag: headers.etag,
    lastModified: Number.isFinite(lm) ? lm : undefined,
    tags,
    ...(info.deliverTags === true ? { deliverTags: true } : {}),
    responseTime,
    fetchStarted: requestTime,
    fetchSequence,
    initialAge: fresh.initialAge,
    freshUntil: fresh.freshUntil,
    swrMs: fresh.swrMs,
    sieMs: fresh.sieMs,
    graceMs: fresh.graceMs,
    explicitlyShared: fresh.explicitlyShared,
    mustRevalidate: fresh.mustRevalidate,
    heads: { second: -1 },
    size: body.length + (bodies.gzip?.length ?? 0) + (bodies.br?.length ?? 0) + headerBytes * 4 + recordBytes(policyReq.headers) + stringBytes + tagBytes + 1024
  }
  for (const enc of ['identity', 'gzip', 'br'] as const) if (bodies[enc]) o.heads[enc] = buildHead(o, enc)
  return o
}

/** A CachedObject as it travels over IPC: the policy as its plain object, no prepared heads. */
export type SharedObject = Omit<CachedObject, 'policy' | 'heads' | 'fetchSequence'> & { policy: object }

export function serializeObject (o: CachedObject): SharedObject {
  // Copy field by field: the prepared heads are rebuilt by the receiver.
  return {
    key: o.key,
    primary: o.primary,
    host: o.host,
    url: o.url,
    status: o.status,
    headers: o.headers,
    policy: o.policy.toObject(),
    bodies: o.bodies,
    compressible: o.compressible,
    etag: o.etag,
    lastModified: o.lastModified,
    tags: o.tags,
    ...(o.deliverTags === true ? { deliverTags: true } : {}),
    responseTime: o.responseTime,
    fetchStarted: o.fetchStarted,
    initialAge: o.initialAge,
    freshUntil: o.freshUntil,
    swrMs: o.swrMs,
    sieMs: o.sieMs,
    graceMs: o.graceMs,
    explicitlyShared: o.explicitlyShared,
    mustRevalidate: o.mustRevalidate,
    size: o.size
  }
}

/**
 * Whatever typed array the channel handed over, as a Buffer that owns its
 * memory: the deserializer returns views into the whole message (or a pooled
 * slab), which a stored body must not pin (design §2.7, compress.ts copyOut).
 */
function asBuffer (b: Uint8Array): Buffer {
  return copyOut(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/** Rebuilds a storable object; `Policy` is the app's (clocked) policy class. */
export function deserializeObject (s: SharedObject, Policy: PolicyClass): CachedObject {
  const bodies: CachedObject['bodies'] = { identity: asBuffer(s.bodies.identity) }
  if (s.bodies.gzip) bodies.gzip = asBuffer(s.bodies.gzip)
  if (s.bodies.br) bodies.br = asBuffer(s.bodies.br)
  const fromObject = (Policy as unknown as { fromObject (obj: object): CachePolicy }).fromObject
  const o: CachedObject = {
    ...s,
    policy: fromObject.call(Policy, s.policy),
    bodies,
    // Sequences order requests within one process: a sibling's fetch is not ordered against ours.
    fetchSequence: 0,
    heads: { second: -1 }
  }
  for (const enc of ['identity', 'gzip', 'br'] as const) if (bodies[enc]) o.heads[enc] = buildHead(o, enc)
  return o
}

