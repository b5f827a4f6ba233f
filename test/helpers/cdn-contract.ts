/**
 * Local servers that implement the documented purge APIs of Fastly,
 * Cloudflare and CloudFront — their requests, authentication, limits and
 * answers — so the purger's adapters are contract-tested without the live
 * services (docs/cdn.md says so). Each records what it purged and can be
 * told to refuse: `script` queues answers (a 429 with Retry-After, a 500, a
 * dropped connection, an answer lost after the purge was done) for the next requests; `down` refuses every request.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { signRequest } from '../../purger/sigv4.js'

export interface Scripted { status: number, headers?: Record<string, string>, body?: string, drop?: boolean, lostAnswer?: boolean }

export interface ContractServer {
  url: string
  /** Accepted purges, in order: the keys (tags, paths) of each. */
  purges: Array<{ at: number, items: string[], soft?: boolean, reference?: string }>
  /** Every request that reached the server, accepted or not, with its time. */
  requests: Array<{ at: number, status: number }>
  script: Scripted[]
  down: boolean
  close (): Promise<void>
}

async function serve (handle: (req: http.IncomingMessage, body: string, server: ContractServer) => Scripted): Promise<ContractServer> {
  const state: ContractServer = { url: '', purges: [], requests: [], script: [], down: false, close: async () => {} }
  const server = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      const scripted = state.down ? { status: 0, drop: true } : state.script.shift()
      // lostAnswer: the request is carried out, then the connection dies before the answer.
      const answer = scripted === undefined || scripted.lostAnswer === true ? { ...handle(req, body, state), drop: scripted?.lostAnswer === true } : scripted
      state.requests.push({ at: Date.now(), status: answer.drop === true ? 0 : answer.status })
      if (answer.drop === true) { req.socket.destroy(); return }
      res.writeHead(answer.status, answer.headers ?? {})
      res.end(answer.body ?? '')
    })
  })
  server.keepAliveTimeout = 100
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  state.close = async () => { server.closeAllConnections(); server.close(); await once(server, 'close') }
  return state
}

const json = (status: number, value: unknown, headers: Record<string, string> = {}): Scripted => ({ status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(value) })

/** Fastly: POST /service/{id}/purge, Fastly-Key, Surrogate-Key (≤ 256 keys), Fastly-Soft-Purge. */
export function fastlyServer (o: { serviceId: string, token: string }): Promise<ContractServer> {
  let n = 0
  return serve((req, _body, s) => {
    if (req.method !== 'POST' || req.url !== `/service/${o.serviceId}/purge`) return json(404, { msg: 'Record not found' })
    if (req.headers['fastly-key'] !== o.token) return json(401, { msg: 'Provided credentials are missing or invalid' })
    const keys = String(req.headers['surrogate-key'] ?? '').split(/\s+/).filter(Boolean)
    if (keys.length === 0 || keys.length > 256) return json(400, { msg: 'Bad request', detail: 'Surrogate-Key must name 1 to 256 keys' })
    s.purges.push({ at: Date.now(), items: keys, soft: req.headers['fastly-soft-purge'] === '1' })
    return json(200, Object.fromEntries(keys.map((k) => [k, `purge-${++n}`])))
  })
}

/** Cloudflare: POST /zones/{zone}/purge_cache, Bearer token, {"tags": [...]} within the per-request limit; a rate per second beyond which 429 + Retry-After. */
export function cloudflareServer (o: { zoneId: string, token: string, tagsPerRequest: number, perSecond?: number }): Promise<ContractServer> {
  const recent: number[] = []
  return serve((req, body, s) => {
    const fail = (status: number, code: number, message: string, headers: Record<string, string> = {}) => json(status, { success: false, errors: [{ code, message }], messages: [], result: null }, headers)
    if (req.method !== 'POST' || req.url !== `/client/v4/zones/${o.zoneId}/purge_cache`) return fail(404, 7003, 'Could not route to this path')
    if (req.headers.authorization !== `Bearer ${o.token}`) return fail(403, 10000, 'Authentication error')
    const now = Date.now()
    while (recent.length > 0 && recent[0] <= now - 1000) recent.shift()
    if (o.perSecond !== undefined && recent.length >= o.perSecond) return fail(429, 971, 'Please wait and consider throttling your request speed', { 'retry-after': '1' })
    let tags: unknown
    try { tags = (JSON.parse(body) as { tags?: unknown }).tags } catch { return fail(400, 1012, 'Request must contain one of "purge_everything", "files", "tags", "hosts" or "prefixes"') }
    if (!Array.isArray(tags) || tags.length === 0) return fail(400, 1012, 'Request must contain one of "purge_everything", "files", "tags", "hosts" or "prefixes"')
    if (tags.length > o.tagsPerRequest) return fail(400, 1019, `Only ${o.tagsPerRequest} tags may be purged per request`)
    recent.push(now)
    s.purges.push({ at: now, items: tags as string[] })
    return json(200, { success: true, errors: [], messages: [], result: { id: `purge-${s.purges.length}` } })
  })
}

/** CloudFront: POST /2020-05-31/distribution/{id}/invalidation, SigV4, InvalidationBatch XML; CallerReference makes it idempotent. */
export function cloudfrontServer (o: { distributionId: string, accessKeyId: string, secretAccessKey: string }): Promise<ContractServer & { invalidations: Map<string, string[]> }> {
  const invalidations = new Map<string, string[]>()
  const xmlError = (status: number, code: string, message: string, headers: Record<string, string> = {}): Scripted =>
    ({ status, headers: { 'content-type': 'text/xml', ...headers }, body: `<?xml version="1.0"?>\n<ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>` })
  const created = (id: string, reference: string, paths: string[]): Scripted => ({
    status: 201,
    headers: { 'content-type': 'text/xml', location: `https://cloudfront.amazonaws.com/2020-05-31/distribution/${o.distributionId}/invalidation/${id}` },
    body: `<?xml version="1.0"?>\n<Invalidation xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Id>${id}</Id><Status>InProgress</Status><CreateTime>${new Date().toISOString()}</CreateTime><InvalidationBatch><Paths><Quantity>${paths.length}</Quantity></Paths><CallerReference>${reference}</CallerReference></InvalidationBatch></Invalidation>`
  })
  return serve((req, body, s) => {
    if (req.method !== 'POST' || req.url !== `/2020-05-31/distribution/${o.distributionId}/invalidation`) return xmlError(404, 'NoSuchDistribution', 'The specified distribution does not exist.')
    // Verify the signature the way AWS does: recompute it over what arrived.
    const auth = String(req.headers.authorization ?? '')
    const signed = /SignedHeaders=([^,]+)/.exec(auth)?.[1]?.split(';') ?? []
    if (!auth.startsWith(`AWS4-HMAC-SHA256 Credential=${o.accessKeyId}/`) || !auth.includes('/us-east-1/cloudfront/aws4_request')) return xmlError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.')
    const headers: Record<string, string> = {}
    for (const name of signed) if (name !== 'host' && name !== 'x-amz-date') headers[name] = String(req.headers[name] ?? '')
    const expected = signRequest({ method: 'POST', url: new URL(req.url!, `http://${req.headers.host}`), headers, body, region: 'us-east-1', service: 'cloudfront', credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey }, amzDate: String(req.headers['x-amz-date']) })
    if (expected.authorization !== auth) return xmlError(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.')
    const reference = /<CallerReference>([^<]*)<\/CallerReference>/.exec(body)?.[1]
    const quantity = Number(/<Quantity>(\d+)<\/Quantity>/.exec(body)?.[1])
    const paths = [...body.matchAll(/<Path>([^<]*)<\/Path>/g)].map((m) => m[1].replace(/&amp;/g, '&'))
    if (reference === undefined || paths.length === 0 || quantity !== paths.length) return xmlError(400, 'MalformedInput', 'Quantity must match the number of paths.')
    if (paths.length > 3000) return xmlError(400, 'TooManyInvalidationsInProgress', 'Processing your request will cause you to exceed the maximum number of in-progress invalidations.')
    const previous = invalidations.get(reference)
    if (previous !== undefined) {
      // The same CallerReference: the invalidation already made, not a new one (or an error when the batch differs).
      if (previous.join('\n') !== paths.join('\n')) return xmlError(409, 'InvalidationBatchAlreadyExists', 'The CallerReference was used for a different batch.')
      return created(`I${[...invalidations.keys()].indexOf(reference) + 1}`, reference, paths)
    }
    invalidations.set(reference, paths)
    s.purges.push({ at: Date.now(), items: paths, reference })
    return created(`I${invalidations.size}`, reference, paths)
  }).then((s) => Object.assign(s, { invalidations }))
}
