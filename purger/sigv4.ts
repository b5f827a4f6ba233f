/**
 * AWS Signature Version 4 for one JSON-less request (CloudFront's API is
 * XML over HTTPS, signed with SigV4). Small enough to write here rather than
 * pull the AWS SDK into a role that makes one kind of call; checked in its
 * test against the worked example of AWS's documentation.
 */
import { createHash, createHmac } from 'node:crypto'

export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

export interface SignInput {
  method: string
  url: URL
  headers: Record<string, string>
  body: string
  region: string
  service: string
  credentials: AwsCredentials
  /** `YYYYMMDDTHHMMSSZ` */
  amzDate: string
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex')
const hmac = (key: Buffer | string, s: string) => createHmac('sha256', key).update(s, 'utf8').digest()

/** RFC 3986 encoding as SigV4 wants it (unreserved characters kept). */
function encode (s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

export function amzDate (ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
}

/** The headers to send: the given ones plus x-amz-date, the session token and Authorization. */
export function signRequest (input: SignInput): Record<string, string> {
  const headers: Record<string, string> = { ...input.headers, host: input.url.host, 'x-amz-date': input.amzDate }
  if (input.credentials.sessionToken) headers['x-amz-security-token'] = input.credentials.sessionToken
  const names = Object.keys(headers).map((n) => n.toLowerCase()).sort()
  const lower: Record<string, string> = {}
  for (const [n, v] of Object.entries(headers)) lower[n.toLowerCase()] = v.trim().replace(/\s+/g, ' ')
  const query = [...input.url.searchParams.entries()].map(([k, v]) => [encode(k), encode(v)])
    .sort((a, b) => a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : (a[0] < b[0] ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join('&')
  const path = input.url.pathname.split('/').map((seg) => encode(decodeURIComponent(seg))).join('/') || '/'
  const signedHeaders = names.join(';')
  const canonical = [input.method, path, query, names.map((n) => `${n}:${lower[n]}\n`).join(''), signedHeaders, sha256(input.body)].join('\n')
  const day = input.amzDate.slice(0, 8)
  const scope = `${day}/${input.region}/${input.service}/aws4_request`
  const toSign = ['AWS4-HMAC-SHA256', input.amzDate, scope, sha256(canonical)].join('\n')
  const key = hmac(hmac(hmac(hmac(`AWS4${input.credentials.secretAccessKey}`, day), input.region), input.service), 'aws4_request')
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex')
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${input.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`
  return headers
}
