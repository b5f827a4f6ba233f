// The coordinator in this process, its agents played over HTTP by the test:
// who may join (the run's token), and how the plan is shared out (every
// agent within one connection / one req/s of the others at every step,
// every agent's threads likewise, adding up to the plan exactly).
import t, { type Test } from 'tap'
import { coordinatorDriver, tokenProblem } from '../../loadtest/coordinator.js'
import { PROTOCOL, VERSION, type Assignment, type JoinAccepted, type Refusal } from '../../loadtest/protocol.js'
import { runLoadTest, type RunOutcome } from '../../loadtest/run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { planSchedule, sliceStep, splitAmount, type PlannedStage, type Slice } from '../../loadtest/stages.js'
import { startFakeSite } from './fake-site.js'

const TOKEN = 'a-shared-secret-of-this-run'

async function ask<T> (base: string, path: string, o: { token?: string, body?: unknown } = {}): Promise<{ status: number, body: T }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`
  const res = await fetch(new URL(path, base), { method: o.body === undefined ? 'GET' : 'POST', headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) })
  const text = await res.text()
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T }
}

/** A coordinator for `agents` agents, running `args` in this process; resolves once it listens. */
async function coordinator (t: Test, agents: number, model: 'closed' | 'open', target: number): Promise<{ url: string, logs: string[], run: Promise<RunOutcome> }> {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const logs: string[] = []
  let listening: (url: string) => void = () => {}
  const url = new Promise<string>(resolve => { listening = resolve })
  const run = runLoadTest({
    scenario: await loadScenario('spike'), url: site.url, duration: 60, model, target, pool: 7, step: 1,
    seed: 1, timeout: 5, thresholds: [], progress: null, log: l => logs.push(l),
    driver: coordinatorDriver({ agents, host: '127.0.0.1', port: 0, token: TOKEN, onListening: listening, joinTimeout: 60_000 })
  })
  run.catch(() => {})
  return { url: await url, logs, run }
}

/** Every agent's part of every step, and every thread's part of its agent's. */
function checkShares (t: Test, plan: PlannedStage[], agents: Array<{ slice: Slice, workers: number }>): void {
  let steps = 0
  let unequal = 0
  let wrongSum = 0
  for (const st of plan) {
    for (const step of st.steps) {
      steps++
      const total = step.rate ?? step.connections
      const amount = (slices: Slice[]): number => {
        const part = sliceStep(step, slices)
        return part === null ? 0 : part.rate ?? part.connections
      }
      const perAgent = agents.map(a => amount([a.slice]))
      if (Math.max(...perAgent) - Math.min(...perAgent) > 1) unequal++
      if (perAgent.reduce((x, y) => x + y, 0) !== total) wrongSum++
      agents.forEach((a, i) => {
        const perThread = Array.from({ length: a.workers }, (_, j) => amount([a.slice, { index: j, count: a.workers }]))
        if (Math.max(...perThread) - Math.min(...perThread) > 1) unequal++
        if (perThread.reduce((x, y) => x + y, 0) !== perAgent[i]) wrongSum++
      })
    }
  }
  t.ok(steps > 10, `${steps} steps`)
  t.equal(unequal, 0, 'at every step, agents (and each agent\'s threads) are within one unit of each other')
  t.equal(wrongSum, 0, 'and add up to the plan exactly')
}

t.test('the token: refused without it or with another, naming the problem; compared whole', async t => {
  t.equal(tokenProblem(undefined, undefined), null, 'no token set: anyone on loopback may join')
  t.match(tokenProblem(TOKEN, undefined), /takes agents that carry the run's token: start the agent with --token <t> or LOADTEST_TOKEN/)
  t.match(tokenProblem(TOKEN, 'Bearer nope'), /wrong token/)
  t.match(tokenProblem(TOKEN, `Bearer ${TOKEN}x`), /wrong token/)
  t.match(tokenProblem(TOKEN, `Basic ${TOKEN}`), /carry the run's token/)
  t.equal(tokenProblem(TOKEN, `Bearer ${TOKEN}`), null)
})

t.test('3 agents with 1, 2 and 3 threads: only agents with the token join; equal shares at every step (closed model)', async t => {
  const { url, logs, run } = await coordinator(t, 3, 'closed', 21)
  const join = { protocol: PROTOCOL, version: VERSION, host: 'test', workers: 1 }
  const none = await ask<Refusal>(url, '/v1/join', { body: join })
  t.equal(none.status, 401)
  t.same(none.body.error, 'unauthorized')
  t.match(none.body.message, /--token <t> or LOADTEST_TOKEN/)
  const wrong = await ask<Refusal>(url, '/v1/time', { token: 'not-the-token-of-this-run' })
  t.equal(wrong.status, 401, 'every route needs the token, the clock too')
  t.match(wrong.body.message, /wrong token/)
  t.match(logs.join('\n'), /refused an agent from 127\.0\.0\.1: this coordinator takes agents that carry the run's token/)
  t.equal((await ask<{ now: number }>(url, '/v1/time', { token: TOKEN })).status, 200)

  const ids: string[] = []
  for (const workers of [1, 2, 3]) {
    const r = await ask<JoinAccepted>(url, '/v1/join', { token: TOKEN, body: { ...join, host: `host-${workers}`, workers } })
    t.equal(r.status, 200, `agent with ${workers} thread(s) joins`)
    ids.push(r.body.agentId)
  }
  const assignments = await Promise.all(ids.map(async id => (await ask<Assignment>(url, `/v1/agents/${id}/assignment`, { token: TOKEN })).body))
  t.same(assignments.map(a => a.slice), [0, 1, 2].map(index => ({ index, count: 3 })), 'one slice each, none twice')
  t.same(assignments[0].plan, planSchedule((await loadScenario('spike')).stages, { duration: 60, model: 'closed', target: 21, pool: 7, step: 1 }))
  checkShares(t, assignments[0].plan, assignments.map((a, i) => ({ slice: a.slice, workers: i + 1 })))
  for (const id of ids) t.equal((await ask(url, `/v1/agents/${id}/reports`, { token: TOKEN, body: { events: [], done: true } })).status, 200)
  const { summary } = await run
  const shares = summary.agents.map(a => a.share)
  t.ok(Math.abs(shares.reduce((x, y) => x + y, 0) - 1) < 1e-5, `shares ${shares.join(', ')} add up to the plan (each rounded to 6 digits)`)
  t.ok(Math.max(...shares) - Math.min(...shares) < 0.01, 'and are a third each over the whole run, ramps included (the remainder of each step goes round)')
})

t.test('open model: the rate is shared the same way', async t => {
  const { url, run } = await coordinator(t, 2, 'open', 301)
  const ids: string[] = []
  for (const workers of [2, 3]) ids.push((await ask<JoinAccepted>(url, '/v1/join', { token: TOKEN, body: { protocol: PROTOCOL, version: VERSION, host: 'h', workers } })).body.agentId)
  const assignments = await Promise.all(ids.map(async id => (await ask<Assignment>(url, `/v1/agents/${id}/assignment`, { token: TOKEN })).body))
  t.ok(assignments[0].plan.every(s => s.steps.every(x => x.rate !== null)))
  checkShares(t, assignments[0].plan, assignments.map((a, i) => ({ slice: a.slice, workers: i + 2 })))
  for (const id of ids) await ask(url, `/v1/agents/${id}/reports`, { token: TOKEN, body: { events: [], done: true } })
  await run
})

t.test('splitAmount: any amount over any agents and threads, at any step, within one unit, adding up', async t => {
  let bad = 0
  for (let x = 0; x <= 40; x++) {
    for (let agents = 1; agents <= 6; agents++) {
      for (let turn = 0; turn < 7; turn++) {
        const perAgent = Array.from({ length: agents }, (_, i) => splitAmount(x, [{ index: i, count: agents }], turn))
        if (Math.max(...perAgent) - Math.min(...perAgent) > 1 || perAgent.reduce((a, b) => a + b, 0) !== x) bad++
        for (let threads = 1; threads <= 4; threads++) {
          for (let i = 0; i < agents; i++) {
            const perThread = Array.from({ length: threads }, (_, j) => splitAmount(x, [{ index: i, count: agents }, { index: j, count: threads }], turn))
            if (Math.max(...perThread) - Math.min(...perThread) > 1 || perThread.reduce((a, b) => a + b, 0) !== perAgent[i]) bad++
          }
        }
      }
    }
  }
  t.equal(bad, 0)
  // the remainder moves on with the step: one connection over 3 agents, step after step
  t.same([0, 1, 2, 3].map(turn => [0, 1, 2].map(i => splitAmount(1, [{ index: i, count: 3 }], turn))), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
})
