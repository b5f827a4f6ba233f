/**
 * Fastly: purge by surrogate key, the documented batch form —
 * `POST /service/{service_id}/purge` with `Surrogate-Key: k1 k2 …` (at most
 * 256 keys) and the API token in `Fastly-Key`. With `Fastly-Soft-Purge: 1`
 * the objects are marked stale instead of removed: Fastly may then serve
 * them only as the page allows (our CDN-Cache-Control grants stale-if-error,
 * never stale-while-revalidate), so a soft purge hides the write no longer
 * than a hard one and keeps the page when the tier is down. The answer is a
 * JSON object key → purge id.
 */
import { callApi, failureOf, PurgeFailure, type CdnAdapter, type PurgeAck } from '../adapter.js'

export interface FastlyOptions {
  apiUrl: string
  serviceId: string
  token: string
  soft: boolean
  timeoutMs: number
  requestsPerSecond: number
}

export const FASTLY_MAX_KEYS = 256

export function fastlyAdapter (o: FastlyOptions): CdnAdapter {
  return {
    cdn: 'fastly',
    maxKeysPerRequest: FASTLY_MAX_KEYS,
    minIntervalMs: o.requestsPerSecond > 0 ? 1000 / o.requestsPerSecond : 0,
    async purge (keys: string[]): Promise<PurgeAck> {
      const answer = await callApi(new URL(`/service/${encodeURIComponent(o.serviceId)}/purge`, o.apiUrl).href, {
        method: 'POST',
        headers: { 'fastly-key': o.token, 'surrogate-key': keys.join(' '), accept: 'application/json', ...(o.soft ? { 'fastly-soft-purge': '1' } : {}) },
        timeoutMs: o.timeoutMs
      })
      if (answer.status === 200) return { requests: 1 }
      const failure = failureOf('fastly', answer, answer.body)
      // Fastly's rate-limit answer names the reset as epoch seconds when it gives no Retry-After.
      const reset = Number(answer.headers['fastly-ratelimit-reset'])
      if (failure.retryAfterMs === undefined && answer.status === 429 && Number.isFinite(reset) && reset > 0) {
        throw new PurgeFailure(failure.message, { status: 429, retryAfterMs: Math.max(0, reset * 1000 - Date.now()) })
      }
      throw failure
    }
  }
}
