// autocannon's command line, mapped onto a run of our own (run.ts):
//   npm run loadtest -- -c 100 -d 10 [-j] <url>
// The flags keep autocannon's names and meaning (its README, v8) where the
// project's client can honour them; the others are refused by name rather
// than ignored, so a habit never measures something else than it says.
// One URL, one fixed request (a `request` item of the mix, scenarios.ts),
// the closed model (-c connections, each sending its next request when the
// previous answer is complete) or, with -R, the open model at that rate.
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import type { RunOptions } from './run.js'
import type { Scenario } from './scenarios.js'

export const AUTOCANNON_USAGE = `usage: npm run loadtest -- [autocannon flags] <url>     (a one-URL run, autocannon's habits)

  -c/--connections <n>   concurrent connections (default 10)
  -d/--duration <sec>    seconds to run, or 10s, 2m (default 10)
  -a/--amount <n>        requests to send, split between the connections; the run ends when they are
                         answered (-d, if given, is then the longest it may take; default 1 h)
  -R/--overallRate <r>   requests per second over all connections (the open model; latencies are
                         corrected for coordinated omission); -c caps the connections carrying it
  -m/--method <m>        HTTP method (default GET)
  -H/--headers <k=v>     a request header, "k=v" or "k: v"; repeatable
  -b/--body <text>       request body (Content-Length is set)
  -i/--input <file>      request body from a file
  -w/--workers <n>       generator threads (default 1); connections and rate are split between them
  -t/--timeout <sec>     seconds before a request times out and its connection is replaced (default 10)
  -p/--pipelining 1      one request in flight per connection (the only value supported)
  -T/--title <text>      title in the JSON result
  -j/--json              print autocannon's result object as one line of JSON on stdout, nothing else
  -l/--latency           print every latency percentile as well
  --renderStatusCodes    print the count of each status code as well
  -n/--no-progress       no per-second progress lines
  --out <dir>            also write summary.json and report.html there (for \`compare\`)
`

/** autocannon flags this runner refuses, with the reason. */
const UNSUPPORTED: ReadonlyArray<[string[], string]> = [
  [['-S', '--socketPath'], 'a Unix socket'],
  [['-W', '--warmup'], 'a warm-up run; run one first: npm run warm, or a short run'],
  [['--on-port'], 'starting the server under test'],
  [['-F', '--form'], 'multipart forms'],
  [['--har'], 'HAR files; a scenario file is the richer path'],
  [['-B', '--bailout'], 'bailing out; scenarios have --abort-on'],
  [['-M', '--maxConnectionRequests'], 'a per-connection maximum'],
  [['-O', '--maxOverallRequests'], 'an overall maximum; use -a'],
  [['-r', '--connectionRate'], 'a per-connection rate; use -R'],
  [['-C', '--ignoreCoordinatedOmission'], 'uncorrected latencies'],
  [['-D', '--reconnectRate'], 'reconnecting every n requests'],
  [['-I', '--idReplacement'], 'body id replacement'],
  [['-f', '--forever'], 'running forever'],
  [['-s', '--servername'], 'another SNI name'],
  [['-x', '--excludeErrorStats'], 'leaving non-2xx responses out of the figures'],
  [['-E', '--expectBody'], 'checking bodies'],
  [['-L', '--sampleInt'], 'another sample interval (samples are one second)'],
  [['--cert', '--key', '--ca'], 'client certificates'],
  [['--debug'], 'printing connection errors'],
  [['-v', '--version'], 'printing the version']
]

export class AutocannonUsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AutocannonUsageError'
  }
}

/** What the result object and the tables say about the run, as autocannon would. */
export interface AutocannonView {
  /** the URL as given */
  url: string
  title?: string
  /** connections used (autocannon: at most the rate, with -R) */
  connections: number
  /** -w as given, 0 without (autocannon's default: no worker threads) */
  workers: number
  amount?: number
  /** seconds asked for (-d), or the cap of an --amount run */
  duration: number
  json: boolean
  latencyTable: boolean
  statusCodes: boolean
  progress: boolean
}

export interface AutocannonCommand {
  kind: 'autocannon'
  opts: RunOptions
  view: AutocannonView
}

const SCENARIO_VALUE_FLAGS = new Set(['--join', '--frontend-url', '--backend-url', '--listen'])

/**
 * An autocannon-style command line: a bare http(s) URL and no --url (a
 * scenario run names its site with --url, an agent its coordinator with --join).
 */
export function isAutocannonCommand (argv: readonly string[]): boolean {
  if (argv[0] === 'agent' || argv[0] === 'compare') return false
  if (argv.some(a => a === '--url' || a.startsWith('--url='))) return false
  return argv.some((a, i) => /^https?:\/\//i.test(a) && !SCENARIO_VALUE_FLAGS.has(argv[i - 1] ?? ''))
}

function int (flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new AutocannonUsageError(`${flag} must be an integer >= ${min}, got "${v}"`)
  return n
}

function positive (flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new AutocannonUsageError(`${flag} must be a number > 0, got "${v}"`)
  return n
}

/** autocannon's -d: seconds, or a time string (10s, 2m, 1m30s). */
function seconds (v: string | undefined, parse: (s: string) => number): number | undefined {
  if (v === undefined) return undefined
  let d: number
  try {
    d = parse(v)
  } catch (err) {
    throw new AutocannonUsageError(`-d/--duration: ${(err as Error).message}`)
  }
  if (!(d > 0) || d > 24 * 3600) throw new AutocannonUsageError('-d/--duration must be > 0 and at most 24h')
  return d
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** "k=v" or "k: v", split at the first of the two, as autocannon does; the value's leading blanks are the separator's. */
export function parseHeader (h: string): [string, string] {
  const colon = h.indexOf(':')
  const equal = h.indexOf('=')
  const i = Math.min(colon < 0 ? Infinity : colon, equal < 0 ? Infinity : equal)
  if (!Number.isFinite(i) || i <= 0) throw new AutocannonUsageError(`An HTTP header was not correctly formatted: ${h}`)
  const name = h.slice(0, i).trim()
  const value = h.slice(i + 1).trim()
  if (!TOKEN.test(name)) throw new AutocannonUsageError(`-H ${h}: "${name}" is not a header name`)
  if (/[\r\n]/.test(value)) throw new AutocannonUsageError(`-H ${name}: a header value cannot hold a line break`)
  return [name, value]
}

/** An amount run ends when its requests are answered; this is the longest it may take unless -d says otherwise. */
const AMOUNT_CAP = 3600

export async function parseAutocannonCommand (argv: string[], o: { parseDuration: (s: string) => number, stderr: NodeJS.WritableStream, signal?: AbortSignal }): Promise<AutocannonCommand> {
  for (const a of argv) {
    const flag = a.startsWith('--') ? a.split('=', 1)[0] : a.startsWith('-') ? a.slice(0, 2) : null
    if (flag === null) continue
    const hit = UNSUPPORTED.find(([names]) => names.includes(flag))
    if (hit) throw new AutocannonUsageError(`${hit[0].join('/')} is an autocannon flag this runner does not take (${hit[1]})`)
  }
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      connections: { type: 'string', short: 'c' },
      duration: { type: 'string', short: 'd' },
      amount: { type: 'string', short: 'a' },
      overallRate: { type: 'string', short: 'R' },
      method: { type: 'string', short: 'm' },
      headers: { type: 'string', short: 'H', multiple: true },
      header: { type: 'string', multiple: true },
      body: { type: 'string', short: 'b' },
      input: { type: 'string', short: 'i' },
      workers: { type: 'string', short: 'w' },
      timeout: { type: 'string', short: 't' },
      pipelining: { type: 'string', short: 'p' },
      title: { type: 'string', short: 'T' },
      json: { type: 'boolean', short: 'j' },
      latency: { type: 'boolean', short: 'l' },
      renderLatencyTable: { type: 'boolean' },
      renderStatusCodes: { type: 'boolean' },
      'no-progress': { type: 'boolean', short: 'n' },
      out: { type: 'string' }
    }
  })
  if (positionals.length !== 1) throw new AutocannonUsageError(positionals.length === 0 ? 'missing <url>' : `one URL expected, got: ${positionals.join(' ')}`)
  let url: URL
  try {
    url = new URL(positionals[0])
  } catch {
    throw new AutocannonUsageError(`"${positionals[0]}" is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AutocannonUsageError(`the URL must be http(s), got ${url.protocol}`)
  const pipelining = int('-p/--pipelining', values.pipelining, 1) ?? 1
  if (pipelining > 1) throw new AutocannonUsageError('-p/--pipelining above 1 is not supported: the client keeps one request in flight per connection (raise -c instead)')
  const connectionsAsked = int('-c/--connections', values.connections, 1) ?? 10
  if (connectionsAsked > 10_000) throw new AutocannonUsageError('-c/--connections must be <= 10000')
  const amount = int('-a/--amount', values.amount, 1)
  const rate = positive('-R/--overallRate', values.overallRate)
  if (rate !== undefined && rate < 1) throw new AutocannonUsageError('-R/--overallRate must be >= 1')
  if (amount !== undefined && rate !== undefined) throw new AutocannonUsageError('-a/--amount with -R/--overallRate is not supported: give the rate and a duration (-d)')
  if (amount !== undefined && amount < connectionsAsked) throw new AutocannonUsageError('connections cannot be greater than amount')
  const duration = seconds(values.duration, o.parseDuration) ?? (amount !== undefined ? AMOUNT_CAP : 10)
  const workersFlag = int('-w/--workers', values.workers, 1)
  if (workersFlag !== undefined && workersFlag > 256) throw new AutocannonUsageError('-w/--workers must be <= 256')
  const timeout = positive('-t/--timeout', values.timeout) ?? 10
  const method = (values.method ?? 'GET').toUpperCase()
  if (!TOKEN.test(method)) throw new AutocannonUsageError(`-m/--method "${values.method}" is not an HTTP method`)
  const headers: Record<string, string> = {}
  for (const h of [...(values.headers ?? []), ...(values.header ?? [])]) {
    const [k, v] = parseHeader(h)
    headers[k] = v
  }
  let body = values.body
  if (values.input !== undefined) {
    if (body !== undefined) throw new AutocannonUsageError('give the body with -b or -i, not both')
    try {
      body = await readFile(values.input, 'utf8')
    } catch (err) {
      throw new AutocannonUsageError(`-i/--input ${values.input}: ${(err as Error).message}`)
    }
  }
  // autocannon: a rate below the connections leaves one connection per request a second
  const connections = rate === undefined ? connectionsAsked : Math.min(connectionsAsked, Math.floor(rate))
  const path = url.pathname + url.search
  const scenario: Scenario = {
    name: 'autocannon',
    description: `${method} ${url.href}`,
    zipf: 1,
    stages: [{ name: 'run', duration: '100%', to: '100%' }],
    mix: [{ action: 'request', method, path, headers, ...(body === undefined ? {} : { body }), weight: 1 }]
  }
  const json = values.json === true
  const progress = !json && values['no-progress'] !== true
  const opts: RunOptions = {
    scenario,
    url: url.origin + '/',
    duration,
    model: rate === undefined ? 'closed' : 'open',
    target: rate === undefined ? connections : Math.floor(rate),
    pool: connections,
    step: 1,
    seed: 1,
    timeout,
    amount,
    thresholds: [],
    // more threads than connections would leave some with nothing to do
    workers: Math.min(workersFlag ?? 1, connections),
    pages: [path],
    out: values.out,
    progress: progress ? o.stderr : null,
    signal: o.signal,
    log: () => {}
  }
  return {
    kind: 'autocannon',
    opts,
    view: {
      url: positionals[0],
      title: values.title,
      connections,
      workers: workersFlag ?? 0,
      amount,
      duration,
      json,
      latencyTable: values.latency === true || values.renderLatencyTable === true,
      statusCodes: values.renderStatusCodes === true,
      progress
    }
  }
}

/** autocannon's opening lines (on stderr): what is about to run. */
export function runningBanner (v: AutocannonView): string {
  const what = v.amount !== undefined ? `${v.amount} requests` : `${v.duration}s`
  return `Running ${what} test @ ${v.url}\n${v.connections} connections${v.workers ? `\n${v.workers} workers` : ''}\n\n`
}
