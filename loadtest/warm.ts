// npm run warm -- --url <base> [--concurrency n] [--timeout s] [--no-check]
// Requests every sitemap page once (bounded concurrency) so the caches are
// full before the doors open, then reads them all again and reports the hit
// ratio of that second pass: near 100 % means the crowd will find warm caches.
// Exit codes: 0 warmed · 1 sitemap unreadable or some pages failed · 2 usage.
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { parseCacheHeaders } from './collect.js'
import { progressBar } from './progress.js'
import { PAGE_HEADERS } from './requests.js'
import { loadSitemap } from './sitemap.js'
import { fmtPct } from './format.js'

export const WARM_USAGE = `usage: npm run warm -- --url <base> [options]

  --url <base>         site to warm (required), e.g. http://127.0.0.1:8080
  --concurrency <n>    requests in flight at once (default 8)
  --timeout <s>        per-request timeout (default 10)
  --no-check           skip the second pass (hit ratio check)
  -h, --help           this help

exit codes: 0 warmed · 1 sitemap unreadable or pages failed · 2 usage error
`

export interface WarmOptions {
  url: string
  concurrency?: number
  timeout?: number
  check?: boolean
  /** where the progress bar goes; null for none */
  progress?: NodeJS.WritableStream | null
}

export interface PassResult {
  pages: number
  ok: number
  failed: Array<{ path: string, error: string }>
  status: Record<string, number>
  cache: { hit: number, stale: number, miss: number, pass: number, none: number }
  /** (HIT + STALE) / pages with a cache header; null if none had one */
  hitRatio: number | null
  seconds: number
}

export interface WarmResult {
  first: PassResult
  second: PassResult | null
}

async function pass (base: string, paths: readonly string[], o: Required<Pick<WarmOptions, 'concurrency' | 'timeout'>>, label: string, out: NodeJS.WritableStream | null): Promise<PassResult> {
  const started = performance.now()
  const r: PassResult = { pages: paths.length, ok: 0, failed: [], status: {}, cache: { hit: 0, stale: 0, miss: 0, pass: 0, none: 0 }, hitRatio: null, seconds: 0 }
  let next = 0
  let done = 0
  const tty = Boolean((out as NodeJS.WriteStream | null)?.isTTY)
  let lastDecile = -1
  const show = (): void => {
    if (!out) return
    if (tty) out.write(`\r${label} ${progressBar(done, paths.length)}`)
    else {
      const decile = Math.floor((done / paths.length) * 10)
      if (decile !== lastDecile) { lastDecile = decile; out.write(`${label} ${progressBar(done, paths.length)}\n`) }
    }
  }
  show()
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++]
      try {
        const res = await fetch(new URL(path, base), { headers: PAGE_HEADERS, signal: AbortSignal.timeout(o.timeout * 1000), redirect: 'manual' })
        await res.arrayBuffer()
        r.status[res.status] = (r.status[res.status] ?? 0) + 1
        if (res.status >= 400) r.failed.push({ path, error: `status ${res.status}` })
        else r.ok++
        const c = parseCacheHeaders(Object.fromEntries(res.headers))
        switch (c.state) {
          case 'HIT': r.cache.hit++; break
          case 'STALE': r.cache.stale++; break
          case 'MISS': r.cache.miss++; break
          case 'PASS': r.cache.pass++; break
          default: r.cache.none++
        }
      } catch (err) {
        r.failed.push({ path, error: (err as Error).message })
      }
      done++
      show()
    }
  }
  await Promise.all(Array.from({ length: Math.min(o.concurrency, paths.length) }, worker))
  if (out && tty) out.write('\n')
  const withHeader = r.cache.hit + r.cache.stale + r.cache.miss + r.cache.pass
  r.hitRatio = withHeader > 0 ? (r.cache.hit + r.cache.stale) / withHeader : null
  r.seconds = (performance.now() - started) / 1000
  return r
}

export async function warm (o: WarmOptions): Promise<WarmResult> {
  const opts = { concurrency: o.concurrency ?? 8, timeout: o.timeout ?? 10 }
  const out = o.progress === undefined ? process.stderr : o.progress
  const pages = await loadSitemap(o.url, { timeoutMs: opts.timeout * 1000 })
  const paths = [...new Set(pages.map(p => p.path))]
  const first = await pass(o.url, paths, opts, 'warming ', out)
  const second = o.check === false ? null : await pass(o.url, paths, opts, 'checking', out)
  return { first, second }
}

export function describeWarm (r: WarmResult): string {
  const f = r.first
  const lines = [`warmed ${f.pages} pages in ${f.seconds.toFixed(1)} s: ${f.ok} ok, ${f.failed.length} failed (status ${Object.entries(f.status).map(([c, n]) => `${c} ×${n}`).join(', ') || 'none'})`]
  for (const x of f.failed.slice(0, 10)) lines.push(`  failed ${x.path}: ${x.error}`)
  if (f.failed.length > 10) lines.push(`  … and ${f.failed.length - 10} more`)
  if (r.second) {
    const s = r.second
    lines.push(s.hitRatio === null
      ? 'second pass: no X-Cache/Cache-Status headers, so no hit ratio (is --url the cache?)'
      : `second pass: hit ratio ${fmtPct(s.hitRatio)} (HIT ${s.cache.hit}, STALE ${s.cache.stale}, MISS ${s.cache.miss}, PASS ${s.cache.pass}${s.cache.none ? `, no header ${s.cache.none}` : ''}) in ${s.seconds.toFixed(1)} s`)
  }
  return lines.join('\n') + '\n'
}

export async function warmMain (argv: string[], io: { stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream } = process): Promise<number> {
  let options: WarmOptions
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        concurrency: { type: 'string' },
        timeout: { type: 'string' },
        'no-check': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    })
    if (values.help) { io.stdout.write(WARM_USAGE); return 0 }
    if (positionals.length > 0) throw new Error(`unexpected argument ${positionals[0]}`)
    if (!values.url) throw new Error('missing --url <base>')
    const url = new URL(values.url)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('--url must be http(s)')
    const concurrency = values.concurrency === undefined ? 8 : Number(values.concurrency)
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) throw new Error('--concurrency must be an integer between 1 and 1000')
    const timeout = values.timeout === undefined ? 10 : Number(values.timeout)
    if (!(timeout > 0)) throw new Error('--timeout must be a number > 0')
    options = { url: url.toString(), concurrency, timeout, check: !values['no-check'], progress: io.stderr }
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n\n${WARM_USAGE}`)
    return 2
  }
  try {
    const r = await warm(options)
    io.stdout.write(describeWarm(r))
    return r.first.failed.length > 0 ? 1 : 0
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  warmMain(process.argv.slice(2)).then((code) => { process.exitCode = code })
}
