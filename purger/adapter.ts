/**
 * What the purger asks of each CDN: purge these keys, in one request's worth.
 * One adapter per provider (adapters/), each speaking its provider's
 * documented API; the worker (worker.ts) batches to `maxKeysPerRequest`,
 * paces requests `minIntervalMs` apart, retries with back-off and honours
 * Retry-After. Every purge is idempotent at the CDN: purging twice only
 * costs a request, so a retry after an unknown outcome is always safe.
 */
import { request, type Dispatcher } from 'undici'

export type CdnName = 'flashcrowd' | 'fastly' | 'cloudflare' | 'cloudfront'

export interface PurgeAck {
  /** HTTP requests this batch took. */
  requests: number
  /** CloudFront: invalidation paths billed for this batch. */
  paths?: number
}

export interface CdnAdapter {
  readonly cdn: CdnName
  /** The provider's per-request limit (tags, keys or paths). */
  readonly maxKeysPerRequest: number
  /** Fewest milliseconds between two requests (the provider's rate limit). */
  readonly minIntervalMs: number
  /**
   * Purges `keys` (at most maxKeysPerRequest); resolves when the CDN
   * acknowledged them, throws a PurgeFailure otherwise. `reference` is the
   * same for a retry of the same batch (CloudFront's CallerReference).
   */
  purge (keys: string[], reference: string): Promise<PurgeAck>
  close? (): Promise<void>
}

/** A purge the CDN did not acknowledge: retried later (after `retryAfterMs` when the CDN named it). */
export class PurgeFailure extends Error {
  readonly status: number | undefined
  readonly retryAfterMs: number | undefined
  /** Some requests of the batch got through before this one failed: their keys are acknowledged. */
  readonly acknowledged: string[]
  constructor (message: string, options: { status?: number, retryAfterMs?: number, acknowledged?: string[] } = {}) {
    super(message)
    this.name = 'PurgeFailure'
    this.status = options.status
    this.retryAfterMs = options.retryAfterMs
    this.acknowledged = options.acknowledged ?? []
  }
}

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; undefined when absent or malformed. */
export function retryAfterMs (value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value
  if (v === undefined) return undefined
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

export interface HttpAnswer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** One HTTP request to a CDN's API; a network failure or timeout is a PurgeFailure without status. */
export async function callApi (url: string, options: { method: Dispatcher.HttpMethod | 'PURGE', headers: Record<string, string>, body?: string, timeoutMs: number, dispatcher?: Dispatcher }): Promise<HttpAnswer> {
  try {
    const res = await request(url, {
      method: options.method as Dispatcher.HttpMethod,
      headers: options.headers,
      body: options.body,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {})
    })
    const body = await res.body.text()
    return { status: res.statusCode, headers: res.headers, body }
  } catch (err) {
    throw new PurgeFailure(`${new URL(url).host} unreachable: ${(err as Error).message}`)
  }
}

/** A non-2xx answer as a PurgeFailure, with the CDN's Retry-After. */
export function failureOf (cdn: string, answer: HttpAnswer, detail: string): PurgeFailure {
  return new PurgeFailure(`${cdn} answered ${answer.status}: ${detail.slice(0, 300)}`, { status: answer.status, retryAfterMs: retryAfterMs(answer.headers['retry-after']) })
}
