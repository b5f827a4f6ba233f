/**
 * flashcrowd edges: cache nodes of this project in front of the tier. Each
 * takes `PURGE /` with `Surrogate-Key: k1 k2 …` and the admin token
 * (cache/purge.ts), exactly as the tier's own caches do. Every edge URL is
 * purged; the batch is acknowledged when all of them answered 200.
 */
import { callApi, failureOf, PurgeFailure, type CdnAdapter, type PurgeAck } from '../adapter.js'

export interface FlashcrowdOptions {
  urls: string[]
  token: string
  timeoutMs: number
  /** Keys per PURGE: bounded by the edges' request-head limit (CACHE_MAX_HEADER_BYTES; keys are up to 128 bytes). */
  maxKeysPerRequest?: number
}

export function flashcrowdAdapter (o: FlashcrowdOptions): CdnAdapter {
  return {
    cdn: 'flashcrowd',
    maxKeysPerRequest: o.maxKeysPerRequest ?? 64,
    minIntervalMs: 0,
    async purge (keys: string[]): Promise<PurgeAck> {
      const answers = await Promise.allSettled(o.urls.map(async (base) => {
        const answer = await callApi(new URL('/', base).href, {
          method: 'PURGE',
          headers: { authorization: `Bearer ${o.token}`, 'surrogate-key': keys.join(' ') },
          timeoutMs: o.timeoutMs
        })
        if (answer.status !== 200) throw failureOf(`edge ${base}`, answer, answer.body)
      }))
      const failed = answers.filter((a): a is PromiseRejectedResult => a.status === 'rejected')
      // One edge that did not take it keeps the whole batch queued: the others take it again (idempotent).
      if (failed.length > 0) {
        const first = failed[0].reason as PurgeFailure
        throw new PurgeFailure(`${failed.length} of ${o.urls.length} edges did not acknowledge: ${first.message}`, { status: first.status, retryAfterMs: first.retryAfterMs })
      }
      return { requests: o.urls.length }
    }
  }
}
