/**
 * Cloudflare: purge by cache tag — `POST /zones/{zone_id}/purge_cache` with
 * `{"tags": [...]}` and an API token (`Authorization: Bearer`). Pages carry
 * the tags in `Cache-Tag` (frontend, CDN_PROVIDER=cloudflare). Cloudflare
 * caps the tags of one request (PURGER_CLOUDFLARE_TAGS_PER_REQUEST) and the
 * purge requests per plan and period; beyond it, 429 with Retry-After. The
 * answer is `{"success": bool, "errors": [...], "result": {"id"}}`.
 */
import { callApi, failureOf, type CdnAdapter, type PurgeAck } from '../adapter.js'

export interface CloudflareOptions {
  apiUrl: string
  zoneId: string
  token: string
  tagsPerRequest: number
  requestsPerSecond: number
  timeoutMs: number
}

export function cloudflareAdapter (o: CloudflareOptions): CdnAdapter {
  const base = o.apiUrl.endsWith('/') ? o.apiUrl : `${o.apiUrl}/`
  return {
    cdn: 'cloudflare',
    maxKeysPerRequest: o.tagsPerRequest,
    minIntervalMs: o.requestsPerSecond > 0 ? 1000 / o.requestsPerSecond : 0,
    async purge (keys: string[]): Promise<PurgeAck> {
      const answer = await callApi(new URL(`zones/${encodeURIComponent(o.zoneId)}/purge_cache`, base).href, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tags: keys }),
        timeoutMs: o.timeoutMs
      })
      let parsed: { success?: boolean, errors?: Array<{ code?: number, message?: string }> } = {}
      try { parsed = JSON.parse(answer.body) as typeof parsed } catch { /* not JSON: judged by status */ }
      if (answer.status === 200 && parsed.success === true) return { requests: 1 }
      throw failureOf('cloudflare', answer, (parsed.errors ?? []).map((e) => `${e.code ?? ''} ${e.message ?? ''}`.trim()).join('; ') || answer.body)
    }
  }
}
