// Many machines when something goes wrong: an agent killed mid-run, an
// agent or a coordinator of another version, a scenario an agent cannot run.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { PROTOCOL, VERSION, type Assignment } from '../../loadtest/protocol.js'
import { planSchedule } from '../../loadtest/stages.js'
import type { Summary } from '../../loadtest/report-json.js'
import { freePort } from '../../common/free-port.js'
import { startCli, stop } from './cli-process.js'
import { startFakeSite } from './fake-site.js'

const OUT = join(import.meta.dirname, '../../test-output/loadtest/distributed-faults')

async function body (req: IncomingMessage): Promise<any> {
  let s = ''
  for await (const c of req) s += c
  return s ? JSON.parse(s) : undefined
}

/** A coordinator of our own making, to hand a real agent what a real coordinator would not. */
async function fakeCoordinator (t: Test, o: { version?: string, assignment?: (url: string) => Assignment }): Promise<{ url: string, refusals: any[] }> {
  const refusals: any[] = []
  const server = createServer((req, res) => {
    void (async () => {
      const json = (status: number, b: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(b)) }
      if (req.url === '/v1/time') return json(200, { now: performance.timeOrigin + performance.now() })
      if (req.url === '/v1/join') { await body(req); return json(200, { agentId: 'agent-1', protocol: PROTOCOL, version: o.version ?? VERSION }) }
      if (req.url === '/v1/agents/agent-1/assignment') return json(200, o.assignment!(siteUrl))
      if (req.url === '/v1/agents/agent-1/refuse') { refusals.push(await body(req)); res.writeHead(204).end(); return }
      json(404, { error: 'bad-request', message: 'no route' })
    })()
  })
  let siteUrl = ''
  const site = await startFakeSite()
  siteUrl = site.url
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); server.close(); await site.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, refusals }
}

t.test('an agent killed mid-run is reported with the share of load it did not send', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const out = join(OUT, 'lost')
  await rm(out, { recursive: true, force: true })
  const coordinator = startCli(['browse', '--url', site.url, '--duration', '8', '--connections', '3', '--agents', '3', '--listen', '127.0.0.1:0', '--agent-timeout', '3', '--out', out])
  t.teardown(() => stop(coordinator))
  const [, url] = await coordinator.waitFor(/coordinator listening on (http:\/\/127\.0\.0\.1:\d+)/)
  const agents = [0, 1, 2].map(() => startCli(['agent', '--join', url, '--workers', '1']))
  for (const a of agents) t.teardown(() => stop(a))
  const victim = agents[1]
  const [, victimId] = await victim.waitFor(/as (agent-\d+)/)
  // every agent has reported two seconds of load
  await coordinator.waitFor(/^\s+2s\s+steady/m)
  victim.child.kill('SIGKILL')
  const code = await coordinator.exited
  t.equal(code, 1, 'a run that lost an agent fails')
  t.match(coordinator.stderr, new RegExp(`agent\\(s\\) lost: ${victimId} \\(\\S+\\) at [\\d.]+ s, [\\d.]+% of the planned load not sent`))
  t.same(await Promise.all(agents.filter(a => a !== victim).map(a => a.exited)), [0, 0], 'the others ran to the end')
  const s = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as Summary
  const lost = s.agents.find(a => a.id === victimId)!
  t.ok(lost.lost, 'the killed agent is marked lost')
  t.ok(lost.lost!.at >= 2 && lost.lost!.at < 8, `lost at ${lost.lost!.at} s, after its second report`)
  // one connection of three for the whole run: it missed its third of what was left
  const expected = (1 / 3) * (8 - lost.lost!.at) / 8
  t.ok(Math.abs(lost.lost!.missedShare - expected) < 0.002, `missed ${lost.lost!.missedShare} of the plan (expected ${expected.toFixed(4)})`)
  t.ok(lost.lost!.missedRequests !== null && lost.lost!.missedRequests > 0, `≈${lost.lost!.missedRequests} requests not sent (${lost.lost!.missedBasis})`)
  t.same(s.agents.filter(a => a.id !== victimId).map(a => a.lost), [null, null])
  t.equal(s.agents.reduce((n, a) => n + a.requests, 0), s.totals.requests, 'what was counted adds up, the lost agent\'s part up to its last report')
  t.ok(s.duration > 7, `the run went on without it (${s.duration} s)`)
})

t.test('the coordinator refuses an agent of another version, naming both', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const c2 = startCli(['browse', '--url', site.url, '--agents', '1', '--listen', '127.0.0.1:0'])
  t.teardown(() => stop(c2))
  const [, url] = await c2.waitFor(/coordinator listening on (http:\/\/127\.0\.0\.1:\d+)/)
  const res = await fetch(url + '/v1/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ protocol: PROTOCOL, version: '0.0.1-old', host: 'old-box', workers: 1 }) })
  t.equal(res.status, 409)
  const r = await res.json() as { error: string, message: string }
  t.equal(r.error, 'version-mismatch')
  t.match(r.message, new RegExp(`agent old-box runs flashcrowd 0\\.0\\.1-old .*this side runs ${VERSION.replace(/\./g, '\\.')}`))
  await c2.waitFor(/refused old-box: version mismatch/, 10_000)
  t.equal(c2.child.exitCode, null, 'and keeps waiting for an agent it can work with')
  const other = await fetch(url + '/v1/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ protocol: PROTOCOL + 1, version: VERSION, host: 'new-box', workers: 1 }) })
  t.equal(other.status, 409, 'another protocol is refused too')
  t.match((await other.json() as { message: string }).message, /protocol 2/)
})

t.test('an agent refuses a coordinator of another version', async t => {
  const fake = await fakeCoordinator(t, { version: '9.9.9' })
  const agent = startCli(['agent', '--join', fake.url, '--workers', '1'])
  t.teardown(() => stop(agent))
  t.equal(await agent.exited, 1)
  t.match(agent.stderr, /refusing the run: version mismatch: the coordinator runs flashcrowd 9\.9\.9/)
  t.same(fake.refusals.map(r => r.error), ['version-mismatch'], 'and tells it why')
})

t.test('an agent refuses a scenario it cannot run, naming the error', async t => {
  const plan = planSchedule([{ name: 'steady', duration: 2, to: 2 }], { duration: 2, model: 'closed', target: 2, pool: 2, step: 1 })
  const fake = await fakeCoordinator(t, {
    assignment: (url) => ({
      runId: 'r', url, pages: ['/'], plan, slice: { index: 0, count: 1 }, seed: 1, timeout: 5, target: 'site', startAt: Date.now() + 2000,
      scenario: { name: 'future', description: 'from a newer coordinator', zipf: 1, stages: [{ name: 'steady', duration: 2, to: 2 }], mix: [{ action: 'teleport', weight: 1 } as never] }
    })
  })
  const agent = startCli(['agent', '--join', fake.url, '--workers', '1'])
  t.teardown(() => stop(agent))
  t.equal(await agent.exited, 1)
  t.match(agent.stderr, /refusing the run: scenario: invalid scenario future:\s+\/mix\/0/)
  t.equal(fake.refusals.length, 1)
  t.equal(fake.refusals[0].error, 'scenario')
  t.match(fake.refusals[0].message, /\/mix\/0/)
})

t.test('the coordinator stops the run when an agent refuses it, naming the agent and the error', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const coordinator = startCli(['browse', '--url', site.url, '--agents', '1', '--listen', '127.0.0.1:0', '--duration', '5'])
  t.teardown(() => stop(coordinator))
  const [, url] = await coordinator.waitFor(/coordinator listening on (http:\/\/127\.0\.0\.1:\d+)/)
  const post = (path: string, b: unknown): Promise<Response> => fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) })
  const joined = await (await post('/v1/join', { protocol: PROTOCOL, version: VERSION, host: 'odd-box', workers: 1 })).json() as { agentId: string }
  const a = await fetch(`${url}/v1/agents/${joined.agentId}/assignment`)
  t.equal(a.status, 200, 'the only agent gets its assignment')
  t.equal((await a.json() as Assignment).slice.count, 1)
  t.equal((await post(`/v1/agents/${joined.agentId}/refuse`, { error: 'scenario', message: 'unknown action "teleport"' })).status, 204)
  t.equal(await coordinator.exited, 1)
  t.match(coordinator.stderr, /error: agent-1 \(odd-box\) refused the run: scenario: unknown action "teleport"/)
})

t.test('an agent started before its coordinator (pods start in any order) waits for it and joins', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const port = await freePort()
  const agent = startCli(['agent', '--join', `http://127.0.0.1:${port}`, '--workers', '1', '--join-wait', '60s'])
  t.teardown(() => stop(agent))
  await agent.waitFor(/the coordinator at http:\/\/127\.0\.0\.1:\d+\/ is not up yet: trying again/)
  const coordinator = startCli(['browse', '--url', site.url, '--agents', '1', '--listen', `127.0.0.1:${port}`, '--duration', '2', '--connections', '2'])
  t.teardown(() => stop(coordinator))
  t.same(await Promise.all([coordinator.exited, agent.exited]), [0, 0], coordinator.stderr + agent.stderr)
  t.match(coordinator.stderr, /agent-1 joined from/)
  t.match(coordinator.stdout, /result: PASS/)
})

t.test('with a token, an agent without it (or with another) is refused, naming the problem; one with it runs', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const token = 'the-secret-of-this-run'
  const coordinator = startCli(['browse', '--url', site.url, '--agents', '1', '--listen', '127.0.0.1:0', '--duration', '1', '--connections', '2', '--token', token])
  t.teardown(() => stop(coordinator))
  const [, url] = await coordinator.waitFor(/coordinator listening on (http:\/\/127\.0\.0\.1:\d+)/)
  const [none, wrong] = [startCli(['agent', '--join', url, '--workers', '1']), startCli(['agent', '--join', url, '--workers', '1', '--token', 'another-secret-entirely'])]
  t.teardown(() => { stop(none); stop(wrong) })
  t.same([await none.exited, await wrong.exited], [1, 1], 'both exit 1')
  t.match(none.stderr, /refused by the coordinator: this coordinator takes agents that carry the run's token: start the agent with --token <t> or LOADTEST_TOKEN/)
  t.match(wrong.stderr, /refused by the coordinator: wrong token/)
  t.match(coordinator.stderr, /refused an agent from 127\.0\.0\.1/)
  t.notMatch(coordinator.stderr, /joined from/, 'neither joined')
  const good = startCli(['agent', '--join', url, '--workers', '1', '--token', token])
  t.teardown(() => stop(good))
  t.same(await Promise.all([coordinator.exited, good.exited]), [0, 0], coordinator.stderr + good.stderr)
  t.match(coordinator.stderr, /agent-1 joined from/)
})
