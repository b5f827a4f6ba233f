// Many machines: the coordinator waits for n agents, hands each its slice
// of the plan and one common start time, adds up what they stream back
// (one collector: one progress, thresholds over the merged stream) and
// tells them all to stop when the run is stopped (an abort threshold,
// Ctrl-C, or an agent that refused the run). An agent that stops reporting
// is declared lost; the report says which share of the load it did not send.
// With a token (required off loopback, cli.ts), every request must carry it.
// The protocol is in protocol.ts; the agent's side in agent.ts.
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Driver, DriverContext, DriverResult } from './local.js'
import { PROTOCOL, VERSION, versionMismatch, type Assignment, type JoinRequest, type Refusal, type ReportAnswer, type ReportBatch } from './protocol.js'
import { epochNow } from './recorder.js'

export interface CoordinatorOptions {
  /** agents to wait for */
  agents: number
  host: string
  /** 0: any free port (tests) */
  port: number
  /** how long to wait for every agent to join, ms */
  joinTimeout?: number
  /** an agent silent this long during the run is declared lost, ms */
  lostAfter?: number
  /** the URL agents join, once the coordinator listens */
  onListening?: (url: string) => void
  /** the run's shared secret: a request without it (Authorization: Bearer …) is refused */
  token?: string
}

/** Between the last agent joining and the common start: every agent must get its assignment and start its threads' clocks. */
const LEAD_MS = 2000
const POLL_HOLD_MS = 20_000
const MAX_BODY = 32 * 1024 * 1024

interface AgentState {
  id: string
  host: string
  workers: number
  index: number
  lastSeen: number
  done: boolean
  lost: boolean
  error: string | null
}

function send (res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end()
    return
  }
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
}

function readJson (req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        reject(new Error('body too large'))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      } catch {
        reject(new Error('body is not JSON'))
      }
    })
    req.on('error', reject)
  })
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** Why a request may not speak to this coordinator, or null. Compared in constant time. */
export function tokenProblem (expected: string | undefined, authorization: string | undefined): string | null {
  if (expected === undefined) return null
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
  if (!m) return 'this coordinator takes agents that carry the run\'s token: start the agent with --token <t> or LOADTEST_TOKEN'
  if (!timingSafeEqual(digest(m[1]), digest(expected))) return 'wrong token: the agent\'s --token / LOADTEST_TOKEN differs from the coordinator\'s'
  return null
}

export function coordinatorDriver (o: CoordinatorOptions): Driver {
  return { run: (ctx) => coordinate(o, ctx) }
}

async function coordinate (o: CoordinatorOptions, ctx: DriverContext): Promise<DriverResult> {
  const { collector, base, signal, log } = ctx
  const joinTimeout = o.joinTimeout ?? 300_000
  const lostAfter = o.lostAfter ?? 10_000
  const agents = new Map<string, AgentState>()
  const waiting = new Set<ServerResponse>()
  const refusedFrom = new Set<string>()
  let phase: 'joining' | 'running' | 'finished' = 'joining'
  let startAt = 0
  let assignments = new Map<string, Assignment>()
  /** why the run must stop for everyone (refusal), null while it goes on */
  let failure: string | null = null
  let settle: ((r: DriverResult) => void) | undefined
  let fail: ((e: Error) => void) | undefined
  const finished = new Promise<DriverResult>((resolve, reject) => { settle = resolve; fail = reject })

  const plannedEnd = base.plan.reduce((end, s) => Math.max(end, s.start + s.duration), 0)
  const sourceIds = (a: AgentState): string[] => Array.from({ length: a.workers }, (_, j) => `${a.id}/${j}`)

  const answerWaiting = (): void => {
    for (const res of waiting) pollAnswer(res)
    waiting.clear()
  }
  const pollAnswer = (res: ServerResponse): void => {
    const id = (res as ServerResponse & { agentId?: string }).agentId ?? ''
    if (failure !== null || phase === 'finished') send(res, 410, { error: 'cancelled', message: failure ?? 'the run is over' } satisfies Refusal)
    else if (phase === 'running') send(res, 200, assignments.get(id))
    else send(res, 204)
  }

  const checkFinished = (): void => {
    if (phase !== 'running') return
    if (![...agents.values()].every(a => a.done || a.lost)) return
    phase = 'finished'
    const workers = new Map([...agents.values()].map(a => [a.id, a.workers]))
    if (failure !== null) fail?.(new Error(failure))
    else settle?.({ startAt, end: epochNow(), workers })
  }

  const stopAll = (why: string): void => {
    if (failure === null) failure = why
    log(`stopping every agent: ${why}`)
    answerWaiting()
    if (phase === 'joining') {
      phase = 'finished'
      fail?.(new Error(why))
    }
    checkFinished()
  }

  const start = (): void => {
    phase = 'running'
    startAt = epochNow() + LEAD_MS
    const list = [...agents.values()]
    assignments = new Map(list.map(a => [a.id, {
      runId: base.runId,
      url: base.url,
      scenario: base.scenario,
      pages: base.pages,
      plan: base.plan,
      slice: { index: a.index, count: list.length },
      seed: base.seed,
      timeout: base.timeout,
      target: base.target,
      arrivals: base.arrivals,
      startAt
    } satisfies Assignment]))
    for (const a of list) {
      a.lastSeen = startAt
      sourceIds(a).forEach((sid, j) => collector.addSource(sid, { agent: a.id, host: a.host, slices: [{ index: a.index, count: list.length }, { index: j, count: a.workers }] }))
    }
    log(`${list.length} agent(s) joined (${list.map(a => `${a.id} ${a.host} ×${a.workers}`).join(', ')}): the run starts in ${LEAD_MS / 1000} s`)
    answerWaiting()
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://coordinator')
    const m = /^\/v1\/agents\/([\w.-]+)\/(assignment|refuse|reports)$/.exec(url.pathname)
    const denied = tokenProblem(o.token, req.headers.authorization)
    if (denied !== null) {
      // once per address: someone tried to take part in this run
      const from = String(req.socket.remoteAddress)
      if (!refusedFrom.has(from) && refusedFrom.size < 100) {
        refusedFrom.add(from)
        log(`refused an agent from ${from}: ${denied}`)
      }
      req.resume()
      return send(res, 401, { error: 'unauthorized', message: denied } satisfies Refusal)
    }
    if (req.method === 'GET' && url.pathname === '/v1/time') return send(res, 200, { now: epochNow() })
    if (req.method === 'POST' && url.pathname === '/v1/join') {
      const body = await readJson(req) as Partial<JoinRequest>
      const mismatch = versionMismatch({ protocol: PROTOCOL, version: VERSION }, body, `agent ${String(body.host ?? req.socket.remoteAddress)}`)
      if (mismatch) {
        log(`refused ${String(body.host ?? req.socket.remoteAddress)}: ${mismatch}`)
        return send(res, 409, { error: 'version-mismatch', message: mismatch } satisfies Refusal)
      }
      const workers = Number(body.workers)
      if (!Number.isInteger(workers) || workers < 1 || workers > 1024 || typeof body.host !== 'string') {
        return send(res, 400, { error: 'bad-request', message: 'join needs { protocol, version, host, workers }' } satisfies Refusal)
      }
      if (phase !== 'joining' || agents.size >= o.agents) {
        log(`refused ${body.host}: the run already has its ${o.agents} agent(s)`)
        return send(res, 409, { error: 'full', message: `this run already has its ${o.agents} agent(s)` } satisfies Refusal)
      }
      const a: AgentState = { id: `agent-${agents.size + 1}`, host: body.host.slice(0, 200) || String(req.socket.remoteAddress), workers, index: agents.size, lastSeen: epochNow(), done: false, lost: false, error: null }
      agents.set(a.id, a)
      log(`${a.id} joined from ${a.host} with ${workers} thread(s) (${agents.size}/${o.agents})`)
      send(res, 200, { agentId: a.id, protocol: PROTOCOL, version: VERSION })
      if (agents.size === o.agents) start()
      return
    }
    if (!m) return send(res, 404, { error: 'bad-request', message: `no route ${req.method} ${url.pathname}` } satisfies Refusal)
    const agent = agents.get(m[1])
    if (!agent) return send(res, 404, { error: 'unknown-agent', message: `no agent ${m[1]} in this run` } satisfies Refusal)
    agent.lastSeen = Math.max(agent.lastSeen, epochNow())
    if (m[2] === 'assignment' && req.method === 'GET') {
      if (phase !== 'joining' || failure !== null) return pollAnswer(Object.assign(res, { agentId: agent.id }))
      // hold the poll until the run starts
      Object.assign(res, { agentId: agent.id })
      waiting.add(res)
      const timer = setTimeout(() => { if (waiting.delete(res)) pollAnswer(res) }, POLL_HOLD_MS)
      res.once('close', () => { clearTimeout(timer); waiting.delete(res) })
      return
    }
    if (m[2] === 'refuse' && req.method === 'POST') {
      const r = await readJson(req) as Partial<Refusal>
      agent.error = `${String(r.error)}: ${String(r.message)}`
      agent.done = true
      for (const sid of sourceIds(agent)) collector.markDone(sid)
      send(res, 204)
      stopAll(`${agent.id} (${agent.host}) refused the run: ${agent.error}`)
      return
    }
    if (m[2] === 'reports' && req.method === 'POST') {
      const batch = await readJson(req) as ReportBatch
      if (agent.lost) return send(res, 200, { stop: true, reason: 'this agent was declared lost: its reports are no longer counted' } satisfies ReportAnswer)
      const ids = sourceIds(agent)
      for (const { worker, event } of batch.events ?? []) {
        const sid = ids[worker]
        if (sid === undefined) continue
        if (event.type === 'seconds') for (const r of event.reports) collector.add(sid, r)
        else if (event.type === 'step') collector.noteStep(event.stage, event.start, event.end)
      }
      if (batch.error) log(`${agent.id} (${agent.host}): ${batch.error}`)
      const stop = signal.aborted || failure !== null
      send(res, 200, (stop ? { stop, reason: failure ?? 'the run was stopped' } : { stop }) satisfies ReportAnswer)
      if (batch.done && !agent.done) {
        agent.done = true
        for (const sid of ids) collector.markDone(sid)
        checkFinished()
      }
      return
    }
    send(res, 405, { error: 'bad-request', message: `${req.method} not allowed on ${url.pathname}` } satisfies Refusal)
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 400, { error: 'bad-request', message: (err as Error).message } satisfies Refusal)
      else res.destroy()
    })
  })
  server.keepAliveTimeout = 65_000
  server.requestTimeout = 0
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => { server.off('error', reject); resolve() })
  })
  const addr = server.address() as AddressInfo
  const joinUrl = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
  log(`coordinator listening on ${joinUrl}: waiting for ${o.agents} agent(s) (npm run loadtest -- agent --join ${joinUrl})`)
  o.onListening?.(joinUrl)

  const joinTimer = setTimeout(() => {
    if (phase === 'joining') stopAll(`only ${agents.size} of ${o.agents} agent(s) joined within ${Math.round(joinTimeout / 1000)} s`)
  }, joinTimeout)
  const onAbort = (): void => {
    if (phase === 'joining') stopAll('interrupted while waiting for agents')
    else log('stopping every agent')
  }
  signal.addEventListener('abort', onAbort, { once: true })
  if (signal.aborted) onAbort()
  // an agent silent for lostAfter is lost; at the planned end plus that grace, every agent is done or lost
  const watch = setInterval(() => {
    if (phase !== 'running') return
    const now = epochNow()
    if (now < startAt) return
    for (const a of agents.values()) {
      if (a.done || a.lost) continue
      const silent = now - a.lastSeen
      const overdue = now > startAt + plannedEnd * 1000 + lostAfter + LEAD_MS
      if (silent > lostAfter || overdue) {
        a.lost = true
        const at = Math.max(0, (a.lastSeen - startAt) / 1000)
        const reason = overdue && silent <= lostAfter ? `no final report ${Math.round(lostAfter / 1000)} s after the planned end` : `no report for ${(silent / 1000).toFixed(1)} s`
        // it is lost from the last second it reported: what it measured up to there counts
        for (const sid of sourceIds(a)) collector.markLost(sid, Math.min(at, collector.sources.get(sid)?.reported ?? 0), reason)
        log(`${a.id} (${a.host}) lost at ${at.toFixed(1)} s: ${reason}`)
      }
    }
    checkFinished()
  }, 250)

  try {
    return await finished
  } finally {
    clearTimeout(joinTimer)
    clearInterval(watch)
    signal.removeEventListener('abort', onAbort)
    for (const res of waiting) send(res, 410, { error: 'cancelled', message: failure ?? 'the run is over' } satisfies Refusal)
    waiting.clear()
    await new Promise<void>(resolve => {
      server.close(() => resolve())
      server.closeIdleConnections()
      // agents' last requests are answered by now; what is left is idle keep-alive or a lost agent
      setTimeout(() => server.closeAllConnections(), 1000).unref()
    })
  }
}
