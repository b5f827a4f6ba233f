/**
 * CloudFront: invalidations — `POST /2020-05-31/distribution/{Id}/invalidation`
 * with an XML InvalidationBatch (Paths, CallerReference), signed with SigV4
 * (service `cloudfront`, region us-east-1). No tags: keys become paths
 * (key-paths.ts). The CallerReference is fixed per batch, so a retry of a
 * batch whose answer was lost does not create (and bill) a second
 * invalidation: CloudFront answers with the one it already has. CloudFront
 * bills paths (beyond a monthly free allowance) and limits invalidations in
 * progress (TooManyInvalidationsInProgress: retried after a back-off).
 */
import { callApi, PurgeFailure, retryAfterMs, type CdnAdapter, type PurgeAck } from '../adapter.js'
import { amzDate, signRequest, type AwsCredentials } from '../sigv4.js'
import { pathsForKeys, type SlugLookup } from '../key-paths.js'

export interface CloudFrontOptions {
  apiUrl: string
  distributionId: string
  credentials: AwsCredentials
  /** Keys per invalidation; each key is at most 2 paths, CloudFront takes 3,000 paths in progress. */
  keysPerRequest: number
  requestsPerSecond: number
  timeoutMs: number
  slugs: SlugLookup
  now?: () => number
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export function invalidationBatchXml (paths: string[], callerReference: string): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<InvalidationBatch xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">' +
    `<Paths><Quantity>${paths.length}</Quantity><Items>${paths.map((p) => `<Path>${xmlEscape(p)}</Path>`).join('')}</Items></Paths>` +
    `<CallerReference>${xmlEscape(callerReference)}</CallerReference></InvalidationBatch>`
}

export function cloudfrontAdapter (o: CloudFrontOptions): CdnAdapter {
  const now = o.now ?? Date.now
  return {
    cdn: 'cloudfront',
    maxKeysPerRequest: o.keysPerRequest,
    minIntervalMs: o.requestsPerSecond > 0 ? 1000 / o.requestsPerSecond : 0,
    async purge (keys: string[], reference: string): Promise<PurgeAck> {
      let paths: string[]
      try {
        paths = await pathsForKeys(keys, o.slugs)
      } catch (err) {
        throw new PurgeFailure(`could not map keys to paths: ${(err as Error).message}`)
      }
      const url = new URL(`/2020-05-31/distribution/${encodeURIComponent(o.distributionId)}/invalidation`, o.apiUrl)
      const body = invalidationBatchXml(paths, reference)
      const headers = signRequest({ method: 'POST', url, headers: { 'content-type': 'application/xml' }, body, region: 'us-east-1', service: 'cloudfront', credentials: o.credentials, amzDate: amzDate(now()) })
      const answer = await callApi(url.href, { method: 'POST', headers, body, timeoutMs: o.timeoutMs })
      if (answer.status === 201) return { requests: 1, paths: paths.length }
      const code = /<Code>([^<]*)<\/Code>/.exec(answer.body)?.[1] ?? ''
      const message = /<Message>([^<]*)<\/Message>/.exec(answer.body)?.[1] ?? answer.body.slice(0, 200)
      throw new PurgeFailure(`cloudfront answered ${answer.status} ${code}: ${message}`, { status: answer.status, retryAfterMs: retryAfterMs(answer.headers['retry-after']) })
    }
  }
}
