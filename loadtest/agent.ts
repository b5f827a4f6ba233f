// `npm run loadtest -- agent --join <coordinator-url>`: one machine's share
// of a distributed run. Starts its generator threads, learns its clock's
// offset from the coordinator's, joins, waits for its assignment, checks it
// can run it (scenario, reachable URL; else it refuses, naming why), runs
// its slice from the common start and streams what it measures back once a
// second. It stops when the coordinator says so.
import { writeFile, mkdir } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { Collector } from './collect.js'
import { WorkerPool } from './local.js'
import { PROTOCOL, VERSION, versionMismatch, type Assignment, type JoinAccepted, type Refusal, type ReportAnswer, type ReportBatch } from './protocol.js'
import { epochNow } from './recorder.js'
import { RequestGenerator } from './requests.js'
import { ScenarioError, validateScenario } from './scenarios.js'
import type { SliceEvent } from './slice-runner.js'
import * as hdr from 'hdr-histogram-js'

export interface AgentOptions {
  /** the coordinator's URL */
  join: string
  /** the run's shared secret, sent with every request */
  token?: string
  workers: number
  /** write agent.json (what this agent measured on its own) there */
  out?: string
  log: (line: string) => void
  signal?: AbortSignal
  /** stop after the coordinator cannot be reached for this long during the run, ms */
  giveUpAfter?: number
  /** keep trying this long while the coordinator is not up yet (pods start in any order), ms */
  joinWait?: number
}

/** What an agent measured on its own: its requests add up, over the agents, to the coordinator's total. */
export interface AgentReport {
  agentId: string
  host: string
  requests: number
  errors: number
  transportErrors: number
  /** HDR histogram of its latencies (µs), compressed base64 */
  latency: string | null
}

class AgentError extends Error {}

async function call<T> (base: string, path: string, init: { method?: string, body?: unknown, timeoutMs?: number, token?: string } = {}): Promise<{ status: number, body: T }> {
  const headers: Record<string, string> = {}
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`
  const res = await fetch(new URL(path, base), {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(init.timeoutMs ?? 30_000)
  })
  const text = await res.text()
  const body = (text ? JSON.parse(text) : undefined) as T
  // the coordinator refuses this agent whatever it asks: no point going on
  if (res.status === 401) throw new AgentError(`refused by the coordinator: ${(body as Refusal | undefined)?.message ?? 'HTTP 401'}`)
  return { status: res.status, body }
}

/** Offset of the coordinator's clock from ours, from the quickest of a few round trips (Cristian's algorithm). */
async function clockOffset (base: string, token: string | undefined): Promise<number> {
  let best = { rtt: Infinity, offset: 0 }
  for (let i = 0; i < 5; i++) {
    const t0 = epochNow()
    const { body } = await call<{ now: number }>(base, '/v1/time', { timeoutMs: 5000, token })
    const t1 = epochNow()
    if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: body.now - (t0 + t1) / 2 }
  }
  return best.offset
}

/** Why this agent cannot run the assignment, or null. */
async function check (a: Assignment): Promise<Refusal | null> {
  try {
    validateScenario(a.scenario, a.scenario?.name ?? 'scenario')
    void new RequestGenerator({ scenario: a.scenario, pages: a.pages, base: a.url, seed: a.seed, runId: a.runId, target: a.target })
  } catch (err) {
    return { error: 'scenario', message: (err instanceof ScenarioError ? '' : 'scenario error: ') + (err as Error).message }
  }
  const probe = new URL(a.target === 'site' ? a.pages[0] : '/', a.url)
  try {
    const res = await fetch(probe, { signal: AbortSignal.timeout(5000) })
    await res.arrayBuffer()
  } catch (err) {
    return { error: 'unreachable', message: `cannot reach ${probe.href} from this agent: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}` }
  }
  return null
}

export async function runAgent (o: AgentOptions): Promise<number> {
  const base = o.join.endsWith('/') ? o.join : o.join + '/'
  const host = hostname()
  const pool = await WorkerPool.start(o.workers)
  try {
    return await agentSession(o, base, host, pool)
  } catch (err) {
    o.log(`agent: ${(err as Error).message}`)
    return 1
  } finally {
    await pool.terminate()
  }
}

/** Is it worth trying again: the coordinator is not listening (yet), or its name does not resolve (yet)? */
function notUpYet (err: unknown): boolean {
  const cause = (err as Error & { cause?: { code?: string } }).cause
  return (err as Error).name === 'TimeoutError' || ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH'].includes(cause?.code ?? '')
}

async function agentSession (o: AgentOptions, base: string, host: string, pool: WorkerPool): Promise<number> {
  const log = o.log
  const deadline = epochNow() + (o.joinWait ?? 120_000)
  let offset: number | undefined
  let said = false
  while (offset === undefined) {
    try {
      offset = await clockOffset(base, o.token)
    } catch (err) {
      if (err instanceof AgentError) throw err
      if (!notUpYet(err) || epochNow() > deadline || o.signal?.aborted) throw new Error(`cannot reach the coordinator at ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`)
      if (!said) log(`the coordinator at ${base} is not up yet: trying again for ${Math.round((deadline - epochNow()) / 1000)} s`)
      said = true
      await new Promise(resolve => setTimeout(resolve, 1000))
    }
  }
  const joined = await call<JoinAccepted | Refusal>(base, '/v1/join', { method: 'POST', body: { protocol: PROTOCOL, version: VERSION, host, workers: pool.size }, token: o.token })
  if (joined.status !== 200) {
    const r = joined.body as Refusal
    log(`refused by the coordinator: ${r?.message ?? `HTTP ${joined.status}`}`)
    return 1
  }
  const accepted = joined.body as JoinAccepted
  // both sides check: an older coordinator may not know this agent's protocol
  const mismatch = versionMismatch({ protocol: PROTOCOL, version: VERSION }, accepted, 'the coordinator')
  if (mismatch) {
    log(`refusing the run: ${mismatch}`)
    await call(base, `/v1/agents/${accepted.agentId}/refuse`, { method: 'POST', body: { error: 'version-mismatch', message: mismatch } satisfies Refusal, token: o.token }).catch(() => {})
    return 1
  }
  const id = accepted.agentId
  log(`joined ${base} as ${id} with ${pool.size} thread(s); clock offset ${offset.toFixed(1)} ms; waiting for the run to start`)

  let assignment: Assignment | undefined
  while (!assignment) {
    if (o.signal?.aborted) return 130
    const r = await call<Assignment | Refusal>(base, `/v1/agents/${id}/assignment`, { timeoutMs: 60_000, token: o.token })
    if (r.status === 200) assignment = r.body as Assignment
    else if (r.status !== 204) {
      log(`the coordinator cancelled the run: ${(r.body as Refusal)?.message ?? `HTTP ${r.status}`}`)
      return 1
    }
  }
  const refusal = await check(assignment)
  if (refusal) {
    log(`refusing the run: ${refusal.error}: ${refusal.message}`)
    await call(base, `/v1/agents/${id}/refuse`, { method: 'POST', body: refusal, token: o.token }).catch(() => {})
    return 1
  }

  const startAt = assignment.startAt - offset
  log(`${assignment.scenario.name} against ${assignment.url}: slice ${assignment.slice.index + 1} of ${assignment.slice.count}, starting in ${((startAt - epochNow()) / 1000).toFixed(1)} s`)
  const own = new Collector({ plan: assignment.plan })
  Array.from({ length: pool.size }, (_, j) => own.addSource(String(j), { agent: id, host, slices: [assignment.slice, { index: j, count: pool.size }] }))
  const queue: ReportBatch['events'] = []
  const run = pool.run({
    url: assignment.url,
    scenario: assignment.scenario,
    pages: assignment.pages,
    plan: assignment.plan,
    slices: [assignment.slice],
    startAt,
    seed: assignment.seed,
    runId: assignment.runId,
    timeout: assignment.timeout,
    target: assignment.target,
    arrivals: assignment.arrivals
  }, (worker: number, event: SliceEvent) => {
    queue.push({ worker, event })
    if (event.type === 'seconds') for (const r of event.reports) own.add(String(worker), r)
  })
  const onAbort = (): void => run.stop()
  o.signal?.addEventListener('abort', onAbort, { once: true })
  let finished = false
  let runError: string | undefined
  run.done.then(() => { finished = true }, (err: Error) => { finished = true; runError = err.message })

  // stream: once a second, and a last batch once the threads are done
  const giveUpAfter = o.giveUpAfter ?? 30_000
  let lastOk = epochNow()
  let stopped = false
  for (;;) {
    const done = finished
    const events = queue.splice(0)
    const batch: ReportBatch = runError ? { events, done, error: runError } : { events, done }
    try {
      const r = await call<ReportAnswer>(base, `/v1/agents/${id}/reports`, { method: 'POST', body: batch, timeoutMs: 15_000, token: o.token })
      if (r.status !== 200) throw new AgentError(`HTTP ${r.status}: ${(r.body as unknown as Refusal)?.message ?? ''}`)
      lastOk = epochNow()
      if (r.body.stop && !stopped) {
        stopped = true
        log(`the coordinator stops the run: ${r.body.reason ?? ''}`)
        run.stop()
      }
      if (done) break
    } catch (err) {
      // keep what was not delivered, in order, for the next try
      queue.unshift(...events)
      if (epochNow() - lastOk > giveUpAfter) {
        run.stop()
        await run.done.catch(() => {})
        log(`lost the coordinator (${(err as Error).message}): stopping`)
        return 1
      }
    }
    if (!finished) await Promise.race([new Promise(resolve => setTimeout(resolve, 1000)), run.done.catch(() => {})])
  }
  o.signal?.removeEventListener('abort', onAbort)
  const lastStep = Math.max(0, ...own.stageTimings.map(s => s.end))
  own.finish(lastStep)
  const t = own.total
  const mine: AgentReport = {
    agentId: id,
    host,
    requests: t.requests,
    errors: t.errors,
    transportErrors: t.transportErrors,
    latency: t.hist.totalCount > 0 ? hdr.encodeIntoCompressedBase64(t.hist) : null
  }
  log(`${id} done: ${t.requests} requests, ${t.errors} errors`)
  if (o.out) {
    await mkdir(o.out, { recursive: true })
    await writeFile(join(o.out, 'agent.json'), JSON.stringify(mine, null, 2) + '\n')
  }
  if (runError) {
    log(`generator failed: ${runError}`)
    return 1
  }
  return o.signal?.aborted ? 130 : 0
}
