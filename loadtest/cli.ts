// npm run loadtest -- <scenario> --url <base> [flags]
//   … --agents <n> --listen <host:port>   coordinate n agents (coordinator.ts)
// npm run loadtest -- agent --join <coordinator-url>   be one (agent.ts)
// npm run loadtest -- [autocannon flags] <url>   one URL, autocannon's habits (autocannon-args.ts)
// npm run loadtest -- compare a/summary.json b/summary.json   (compare.ts)
// Exit codes: 0 run passed · 1 a threshold failed, an agent was lost or
// refused, or the run could not be carried out · 2 bad usage (unknown
// scenario, bad flag) · 130 interrupted.
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { runAgent, type AgentOptions } from './agent.js'
import { AUTOCANNON_USAGE, AutocannonUsageError, isAutocannonCommand, parseAutocannonCommand, runningBanner, type AutocannonCommand } from './autocannon-args.js'
import { autocannonResult, autocannonTables } from './autocannon-result.js'
import { COMPARE_USAGE, CompareUsageError, parseCompareCommand, runCompare, type CompareCommand } from './compare.js'
import { parseTier } from './capacity.js'
import { ConfigError } from '../common/config.js'
import { loadLoadtestConfig } from './config.js'
import { coordinatorDriver } from './coordinator.js'
import { renderTable } from './report-table.js'
import { runLoadTest, type RunOptions } from './run.js'
import { checkKneeThresholds, type KneeSearchOptions } from './knee.js'
import { ARRIVAL_PROCESSES, type ArrivalProcess } from './arrivals.js'
import { runKneeSearch } from './knee-run.js'
import { BUILTIN_SCENARIOS, loadScenario, ScenarioError } from './scenarios.js'
import { parseThreshold, ThresholdError } from './thresholds.js'

export const USAGE = `usage: npm run loadtest -- <scenario> --url <base> [options]
       npm run loadtest -- <scenario> --url <base> --agents <n> --listen <host:port> [options]
       npm run loadtest -- agent --join <coordinator-url> [--token t] [--workers n] [--out dir]
       npm run loadtest -- [autocannon flags] <url>          (below)
       npm run loadtest -- compare a/summary.json b/summary.json [options]   (below)

scenarios:
${Object.values(BUILTIN_SCENARIOS).map(s => `  ${s.name.padEnd(12)} ${s.description}`).join('\n')}
  <file>.json  a scenario file: { "stages": [{ "name", "duration", "from"?, "to" }], "mix": [{ "action", "weight", "path"? }], "zipf"? }
               durations and targets are numbers or percentages of --duration / the target ("20%")

options:
  --url <base>          site under test (required), e.g. http://127.0.0.1:8080
  --duration <time>     whole run: 30, 45s, 2m (default 30s)
  --connections <n>     closed model: the target number of connections (default 10);
                        open model: the same as --max-connections
  --rate <r>            open model: target arrival rate in req/s (stages scale it); requests leave
                        on a clock whatever the site does, each timed from when it was meant to
                        leave; late ones (> 10 ms) and dropped ones (no connection within
                        --timeout) are counted
  --max-connections <n> open model: the most connections carrying the rate, opened as needed
                        (default one second's arrivals at the peak rate, 20..2000)
  --arrivals <even|poisson>  open model: evenly spaced arrivals (default) or a Poisson process
  --step <s>            seconds per step of a ramping stage (default duration/50, 0.25..1)
  --workers <n>         generator threads on this machine (default: its ${availableParallelism()} cores);
                        connections and --rate are totals, split between them
  --timeout <s>         per-request timeout (default 10)
  --seed <n>            seed of the URL and body sequence (default 1)
  --out <dir>           write summary.json and report.html there
  --threshold <expr>    fail the run (exit 1) unless it holds; repeatable:
                        p50|p90|p95|p99|p99.9|max|avg (ms), rps, requests, errors, hit, origin,
                        late, dropped (open model: share of the arrivals; ratio or %)
                        e.g. p99<250  errors<0.1%  hit>0.95  'p99{endpoint=/news/:slug}<300'  'rps{stage=hold}>1000'
  --abort-on <expr>     like --threshold, checked every second over everything measured so far:
                        the first to fail stops every generator (and fails the run); repeatable
  --agents <n>          coordinate a run over n agents (other machines): wait for them on --listen,
                        give each its share of the plan and one start time, merge what they send
  --listen <host:port>  where the coordinator waits for agents, e.g. 0.0.0.0:7700
  --token <t>           shared secret of a distributed run (16+ characters; default LOADTEST_TOKEN),
                        the same on the coordinator and every agent; required off loopback
  --agent-wait <time>   how long to wait for every agent to join (default 5m)
  --agent-timeout <s>   an agent silent this long is lost (default 10); the report says what it did not send
  --join <url>          (agent) the coordinator's URL
  --join-wait <time>    (agent) how long to keep trying while the coordinator is not up yet (default 2m)
  --knee <expr>         search for the knee instead of one run: the open-model rate starts at --rate and
                        rises by --rate-step each --step-duration until a step breaks one of these
                        (judged over the whole step, like --threshold without {…}); repeatable
  --rate-step <n|xF>    knee: add n req/s per step, or multiply by F ("x1.5") (default: add --rate)
  --step-duration <t>   knee: length of each step (default 10s)
  --max-rate <r>        knee: stop there if nothing broke (default 20 × --rate);
                        a step the generator could not send on time (over 2% of its arrivals
                        late with connections free) is the generator's limit: the search goes
                        on after one, stops after two in a row (the knee is then a lower bound)
  --frontend-url <url>  knee: search straight at one frontend too (its own knee, for the plan)
  --backend-url <url>   knee: search straight at one backend's write API too (writes only)
  --plan-users <n>      capacity plan: instances of cache, frontend, backend for n concurrent users
  --think-time <s>      seconds between two requests of one user (default 10)
  --tier <spec>         instances in the tested tier (default cache=1,frontend=1,backend=1)
  --headroom <f>        run instances at most at this share of measured capacity (default 0.7)
  --frontend-rps <r>    per-frontend req/s measured straight at a frontend (for the plan)
  --backend-rps <r>     per-backend writes/s (for the plan)
  --quiet               no per-second progress
  -h, --help            this help

exit codes: 0 pass · 1 threshold failed, agent lost or refused, or run error · 2 usage error

${AUTOCANNON_USAGE}
${COMPARE_USAGE}`

export class UsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** "30", "30s", "2m", "1m30s", "500ms" → seconds. */
export function parseDuration (s: string): number {
  const t = s.trim()
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t)
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy
  let total = 0
  let m: RegExpExecArray | null
  let consumed = 0
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * ({ ms: 0.001, s: 1, m: 60, h: 3600 } as const)[m[2] as 'ms' | 's' | 'm' | 'h']
    consumed = re.lastIndex
  }
  if (consumed !== t.length || consumed === 0) throw new UsageError(`bad duration "${s}": use e.g. 30, 45s, 2m, 1m30s`)
  return total
}

/**
 * Open model: enough connections for one second of arrivals at the peak
 * rate to be in flight at once, so a stall of up to a second (a GC pause, a
 * failover) is ridden out on fresh connections, as an open-model client
 * would; they are opened only as needed. Beyond the cap, arrivals wait for
 * a connection and are counted late, still timed from their intended time.
 */
export function defaultMaxConnections (peakRate: number): number {
  return Math.min(2000, Math.max(20, Math.ceil(peakRate)))
}

function num (name: string, v: string | undefined, o: { min?: number, max?: number, integer?: boolean } = {}): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`)
  if (o.integer && !Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got "${v}"`)
  if (o.min !== undefined && n < o.min) throw new UsageError(`--${name} must be >= ${o.min}, got ${v}`)
  if (o.max !== undefined && n > o.max) throw new UsageError(`--${name} must be <= ${o.max}, got ${v}`)
  return n
}

export interface Io {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  signal?: AbortSignal
  /** where LOADTEST_TOKEN is read (default process.env) */
  env?: NodeJS.ProcessEnv
}

/** 127.0.0.0/8, ::1, localhost: only this machine can reach it. */
export function isLoopback (host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/**
 * The run's shared secret: --token, else LOADTEST_TOKEN. A coordinator
 * reachable from other machines would hand its plan to, and count reports
 * from, anybody who can reach it: off loopback the token is required.
 */
function token (flag: string | undefined, env: NodeJS.ProcessEnv, offLoopback: string | null): string | undefined {
  if (flag !== undefined && flag.length < 16) throw new UsageError('--token must be at least 16 characters')
  let t = flag
  if (t === undefined) {
    try {
      t = loadLoadtestConfig(env).LOADTEST_TOKEN
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(err.problems.join('; '))
      throw err
    }
  }
  if (t === undefined && offLoopback !== null) throw new UsageError(`${offLoopback}: set the run's shared secret with --token <t> or LOADTEST_TOKEN (16+ characters, the same on the coordinator and every agent)`)
  return t
}

/** "host:port", "[::1]:port", ":port" (every interface). */
export function parseListen (spec: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(spec.trim())
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new UsageError(`bad --listen "${spec}": expected host:port, e.g. 0.0.0.0:7700 or 127.0.0.1:0`)
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
}

function httpUrl (flag: string, v: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new UsageError(`--${flag} "${v}" is not a URL`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--${flag} must be http(s), got ${u.protocol}`)
  return u.toString()
}

/** What a command line asks for; parseCommand throws a usage error (UsageError, ThresholdError, ScenarioError, ERR_PARSE_ARGS) otherwise. */
export type Command =
  | { kind: 'help' }
  | { kind: 'agent', agent: AgentOptions }
  | { kind: 'run', opts: RunOptions, knee?: KneeSearchOptions, frontendUrl?: string, backendUrl?: string, coordinator?: { agents: number, host: string, port: number } }
  | AutocannonCommand
  | CompareCommand

export async function parseCommand (argv: string[], io: Io): Promise<Command> {
  // help whatever else the line holds (the autocannon and compare forms have no -h of their own)
  if (argv.includes('-h') || argv.includes('--help')) return { kind: 'help' }
  if (argv[0] === 'compare') return parseCompareCommand(argv.slice(1))
  if (isAutocannonCommand(argv)) return parseAutocannonCommand(argv, { parseDuration, stderr: io.stderr, signal: io.signal })
  let opts: RunOptions
  let knee: KneeSearchOptions | undefined
  let frontendUrl: string | undefined
  let backendUrl: string | undefined
  let coordinator: { agents: number, host: string, port: number } | undefined
  let scenarioArg: string
  {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        duration: { type: 'string' },
        connections: { type: 'string' },
        rate: { type: 'string' },
        'max-connections': { type: 'string' },
        arrivals: { type: 'string' },
        step: { type: 'string' },
        timeout: { type: 'string' },
        workers: { type: 'string' },
        'abort-on': { type: 'string', multiple: true },
        seed: { type: 'string' },
        out: { type: 'string' },
        threshold: { type: 'string', multiple: true },
        'plan-users': { type: 'string' },
        'think-time': { type: 'string' },
        tier: { type: 'string' },
        headroom: { type: 'string' },
        'frontend-rps': { type: 'string' },
        'backend-rps': { type: 'string' },
        agents: { type: 'string' },
        listen: { type: 'string' },
        'agent-wait': { type: 'string' },
        'agent-timeout': { type: 'string' },
        join: { type: 'string' },
        'join-wait': { type: 'string' },
        token: { type: 'string' },
        knee: { type: 'string', multiple: true },
        'rate-step': { type: 'string' },
        'step-duration': { type: 'string' },
        'max-rate': { type: 'string' },
        'frontend-url': { type: 'string' },
        'backend-url': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    })
    if (values.help) return { kind: 'help' }
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing <scenario>' : `one scenario expected, got: ${positionals.join(' ')}`)
    scenarioArg = positionals[0]
    if (scenarioArg === 'agent') {
      if (!values.join) throw new UsageError('an agent needs --join <coordinator-url>')
      if (values.url || values.agents) throw new UsageError('an agent takes its URL and plan from the coordinator: give it --join (and --workers) only')
      let join: URL
      try {
        join = new URL(values.join)
      } catch {
        throw new UsageError(`--join "${values.join}" is not a URL`)
      }
      if (join.protocol !== 'http:') throw new UsageError(`--join must be an http:// URL, got ${join.protocol}`)
      const secret = token(values.token, io.env ?? process.env, isLoopback(join.hostname) ? null : `--join ${join.host} is another machine`)
      return {
        kind: 'agent',
        agent: {
          join: join.href,
          token: secret,
          workers: num('workers', values.workers, { min: 1, max: 256, integer: true }) ?? availableParallelism(),
          out: values.out,
          joinWait: (values['join-wait'] === undefined ? 120 : parseDuration(values['join-wait'])) * 1000,
          log: (line) => io.stderr.write(line + '\n'),
          signal: io.signal
        }
      }
    }
    if (values.join) throw new UsageError('--join is for agents: npm run loadtest -- agent --join <coordinator-url>')
    if (!values.url) throw new UsageError('missing --url <base>')
    let url: URL
    try {
      url = new URL(values.url)
    } catch {
      throw new UsageError(`--url "${values.url}" is not a URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url must be http(s), got ${url.protocol}`)
    const duration = values.duration === undefined ? 30 : parseDuration(values.duration)
    if (!(duration > 0) || duration > 24 * 3600) throw new UsageError('--duration must be > 0 and at most 24h')
    const rate = num('rate', values.rate, { min: 1 })
    const connections = num('connections', values.connections, { min: 1, max: 10_000, integer: true })
    const maxConnections = num('max-connections', values['max-connections'], { min: 1, max: 10_000, integer: true })
    const model = rate === undefined ? 'closed' : 'open'
    if (model === 'closed' && (maxConnections !== undefined || values.arrivals !== undefined)) throw new UsageError('--max-connections and --arrivals belong to the open model (--rate)')
    if (maxConnections !== undefined && connections !== undefined && maxConnections !== connections) throw new UsageError('in the open model --connections is --max-connections: give one of them')
    const arrivals = values.arrivals as ArrivalProcess | undefined
    if (arrivals !== undefined && !ARRIVAL_PROCESSES.includes(arrivals)) throw new UsageError(`--arrivals must be ${ARRIVAL_PROCESSES.join(' or ')}, got "${values.arrivals}"`)
    const target = model === 'open' ? rate as number : connections ?? 10
    const pool = model === 'open' ? maxConnections ?? connections ?? defaultMaxConnections(target) : target
    const users = num('plan-users', values['plan-users'], { min: 1, integer: true })
    const thresholds = (values.threshold ?? []).map(parseThreshold)
    if (values.knee) {
      const kneeThresholds = values.knee.map(parseThreshold)
      checkKneeThresholds(kneeThresholds)
      if (thresholds.length > 0) throw new UsageError('a knee search breaks its thresholds on purpose: name them with --knee, not --threshold')
      if (values.duration !== undefined) throw new UsageError('a knee search lasts its steps: set --step-duration (and --max-rate), not --duration')
      if (rate === undefined) throw new UsageError('a knee search needs --rate <r>, the first step\'s rate')
      const stepSpec = values['rate-step']?.trim()
      let step: KneeSearchOptions['step'] = { add: rate }
      if (stepSpec !== undefined) {
        const m = /^[x×](\d+(?:\.\d+)?)$/.exec(stepSpec)
        if (m) {
          if (!(Number(m[1]) > 1)) throw new UsageError(`--rate-step ${stepSpec}: a factor must be above 1`)
          step = { factor: Number(m[1]) }
        } else step = { add: num('rate-step', stepSpec, { min: 1 }) as number }
      }
      const maxRate = num('max-rate', values['max-rate'], { min: rate }) ?? rate * 20
      const stepDuration = values['step-duration'] === undefined ? 10 : parseDuration(values['step-duration'])
      if (!(stepDuration >= 1)) throw new UsageError('--step-duration must be at least 1 s')
      knee = {
        start: rate,
        step,
        stepDuration,
        maxRate,
        thresholds: kneeThresholds,
        pool: maxConnections ?? connections ?? defaultMaxConnections(maxRate)
      }
      if (values['frontend-url']) frontendUrl = httpUrl('frontend-url', values['frontend-url'])
      if (values['backend-url']) backendUrl = httpUrl('backend-url', values['backend-url'])
    } else if (values['frontend-url'] || values['backend-url'] || values['rate-step'] || values['step-duration'] || values['max-rate']) {
      throw new UsageError('--rate-step, --step-duration, --max-rate, --frontend-url and --backend-url belong to a knee search (--knee)')
    }
    const abortOn = (values['abort-on'] ?? []).map(parseThreshold)
    const workers = num('workers', values.workers, { min: 1, max: 256, integer: true }) ?? availableParallelism()
    const agents = num('agents', values.agents, { min: 1, max: 1000, integer: true })
    if (agents !== undefined && !values.listen) throw new UsageError('--agents needs --listen <host:port> for the agents to join')
    if (agents === undefined && values.listen) throw new UsageError('--listen is for a coordinator: add --agents <n>')
    coordinator = agents === undefined ? undefined : { agents, ...parseListen(values.listen as string) }
    if (values.token !== undefined && !coordinator) throw new UsageError('--token is for a distributed run: the coordinator (--agents, --listen) and its agents')
    const secret = coordinator ? token(values.token, io.env ?? process.env, isLoopback(coordinator.host) ? null : `--listen ${values.listen} takes agents from other machines`) : undefined
    // agents run one plan each, then exit: the per-role searches would wait for agents that are gone
    if (coordinator && (frontendUrl || backendUrl)) throw new UsageError('--frontend-url and --backend-url searches run from one machine: drop --agents, or search each role in its own distributed run')
    const driver = coordinator === undefined
      ? undefined
      : coordinatorDriver({
        ...coordinator,
        token: secret,
        joinTimeout: (values['agent-wait'] === undefined ? 300 : parseDuration(values['agent-wait'])) * 1000,
        lostAfter: (num('agent-timeout', values['agent-timeout'], { min: 0.5 }) ?? 10) * 1000
      })
    const scenario = await loadScenario(scenarioArg)
    opts = {
      scenario,
      url: url.toString(),
      duration,
      model,
      target,
      pool,
      arrivals,
      // a ramp of a few seconds still gets several steps in a short run
      step: num('step', values.step, { min: 0.05 }) ?? Math.min(1, Math.max(0.25, duration / 50)),
      seed: num('seed', values.seed, { integer: true, min: 0 }) ?? 1,
      // a second at least: the timeout sweep looks a few times per timeout
      timeout: num('timeout', values.timeout, { min: 1 }) ?? 10,
      thresholds,
      abortOn,
      workers,
      driver,
      out: values.out,
      planUsers: users === undefined
        ? undefined
        : {
            users,
            thinkTime: num('think-time', values['think-time'], { min: 0.01 }) ?? 10,
            headroom: num('headroom', values.headroom, { min: 0.05, max: 1 }) ?? 0.7,
            tier: parseTier(values.tier ?? ''),
            frontendRps: num('frontend-rps', values['frontend-rps'], { min: 0.001 }),
            backendRps: num('backend-rps', values['backend-rps'], { min: 0.001 })
          },
      progress: values.quiet ? null : io.stderr,
      signal: io.signal,
      log: (line) => io.stderr.write(line + '\n')
    }
  }
  return { kind: 'run', opts, knee, frontendUrl, backendUrl, coordinator }
}

export async function main (argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let cmd: Command
  try {
    cmd = await parseCommand(argv, io)
  } catch (err) {
    const e = err as Error & { code?: string }
    const usage = err instanceof UsageError || err instanceof ThresholdError || err instanceof ScenarioError ||
      err instanceof AutocannonUsageError || err instanceof CompareUsageError ||
      e.code?.startsWith('ERR_PARSE_ARGS') || /^bad --tier/.test(e.message)
    if (!usage) throw err
    // the usage of the form that was tried
    const text = argv[0] === 'compare' ? COMPARE_USAGE : isAutocannonCommand(argv) ? AUTOCANNON_USAGE : USAGE
    io.stderr.write(`error: ${e.message}\n\n${text}`)
    return 2
  }

  if (cmd.kind === 'help') {
    io.stdout.write(USAGE)
    return 0
  }
  // an agent's own failures are reported by runAgent, with its exit code
  if (cmd.kind === 'agent') return runAgent(cmd.agent)
  if (cmd.kind === 'autocannon') return runAutocannon(cmd, io)
  if (cmd.kind === 'compare') return runCompare(cmd, io)
  const { opts, knee, frontendUrl, backendUrl } = cmd
  let outcome
  try {
    outcome = knee ? await runKneeSearch({ ...opts, knee, frontendUrl, backendUrl }) : await runLoadTest(opts)
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
  const { summary, files } = outcome
  io.stdout.write('\n' + renderTable(summary))
  for (const f of files) io.stderr.write(`wrote ${f}\n`)
  if (summary.knee) {
    // the search stops itself at the knee: that is its result, not a failure
    const unmeasured = [summary.knee.site, summary.knee.frontend, summary.knee.backend].filter(k => k !== null && k.lastPassingRate === null)
    if (unmeasured.length > 0) {
      io.stderr.write(`no knee measured at ${unmeasured.map(k => k!.url).join(', ')}: the first step already broke; start lower (--rate)\n`)
      return 1
    }
    return summary.aborted && !summary.abortedBy ? 130 : 0
  }
  const lost = summary.agents.filter(a => a.lost)
  if (lost.length > 0) {
    io.stderr.write(`agent(s) lost: ${lost.map(a => `${a.id} (${a.host}) at ${a.lost!.at} s, ${(a.lost!.missedShare * 100).toFixed(1)}% of the planned load not sent`).join('; ')}\n`)
    return 1
  }
  if (summary.abortedBy) {
    io.stderr.write(`stopped: abort threshold ${summary.abortedBy.expr} failed at ${summary.abortedBy.at} s\n`)
    return 1
  }
  if (summary.aborted) return 130
  const failed = summary.thresholds.filter(t => !t.pass)
  if (failed.length > 0) {
    io.stderr.write(`threshold failed: ${failed.map(t => t.expr).join(', ')}\n`)
    return 1
  }
  return 0
}

/** autocannon's habits: its banner and tables on stderr, or only its result object on stdout with --json. */
async function runAutocannon ({ opts, view }: AutocannonCommand, io: Io): Promise<number> {
  if (!view.json) io.stderr.write(runningBanner(view))
  let outcome
  try {
    outcome = await runLoadTest(opts)
  } catch (err) {
    io.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
  const result = autocannonResult(outcome, view)
  if (view.json) io.stdout.write(JSON.stringify(result) + '\n')
  else io.stderr.write(await autocannonTables(result, { outputStream: io.stderr, latencyTable: view.latencyTable, statusCodes: view.statusCodes }))
  for (const f of outcome.files) io.stderr.write(`wrote ${f}\n`)
  return outcome.summary.aborted ? 130 : 0
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const ac = new AbortController()
  process.once('SIGINT', () => {
    process.stderr.write('\ninterrupted: stopping, the report covers what ran\n')
    ac.abort()
  })
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: ac.signal })
    .then((code) => { process.exitCode = code })
    .catch((err: unknown) => {
      process.stderr.write(`error: ${(err as Error)?.stack ?? String(err)}\n`)
      process.exitCode = 1
    })
}
