// Many machines, on loopback: a real coordinator and three real agent
// processes against a real node:http site. What the coordinator reports must
// be exactly what the agents measured, added up.
import t, { type Test } from 'tap'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import * as hdr from 'hdr-histogram-js'
import { Value } from '@sinclair/typebox/value'
import { SummarySchema, type Summary } from '../../loadtest/report-json.js'
import type { AgentReport } from '../../loadtest/agent.js'
import { startCli, stop, type CliProcess } from './cli-process.js'
import { startFakeSite } from './fake-site.js'

const OUT = join(import.meta.dirname, '../../test-output/loadtest/distributed')

async function coordinatorAndAgents (t: Test, args: string[], agents: number, out: string): Promise<{ coordinator: CliProcess, agents: CliProcess[] }> {
  await rm(out, { recursive: true, force: true })
  const coordinator = startCli([...args, '--agents', String(agents), '--listen', '127.0.0.1:0', '--out', join(out, 'run')])
  t.teardown(() => stop(coordinator))
  const [, url] = await coordinator.waitFor(/coordinator listening on (http:\/\/127\.0\.0\.1:\d+)/)
  const list = Array.from({ length: agents }, (_, i) => startCli(['agent', '--join', url, '--workers', '1', '--out', join(out, `agent-${i}`)]))
  for (const a of list) t.teardown(() => stop(a))
  return { coordinator, agents: list }
}

t.test('3 agents: merged counts are the sum of the agents\' counts, merged p99 is the p99 of all their latencies', async t => {
  const site = await startFakeSite({ delayMs: 1 })
  t.teardown(() => site.close())
  const out = join(OUT, 'sums')
  const { coordinator, agents } = await coordinatorAndAgents(t, ['mixed', '--url', site.url, '--duration', '3', '--connections', '6', '--threshold', 'p99<10000', '--threshold', 'errors<1%'], 3, out)
  const codes = await Promise.all([coordinator.exited, ...agents.map(a => a.exited)])
  t.same(codes, [0, 0, 0, 0], `coordinator and agents exit 0\n${coordinator.stderr}\n${agents.map(a => a.stderr).join('\n')}`)
  const s = JSON.parse(await readFile(join(out, 'run', 'summary.json'), 'utf8')) as Summary
  t.same([...Value.Errors(SummarySchema, s)].slice(0, 3).map(e => `${e.path}: ${e.message}`), [], 'summary.json follows the schema')
  t.equal(s.agents.length, 3)
  t.same(s.agents.map(a => a.share), [1 / 3, 1 / 3, 1 / 3].map(x => Math.round(x * 1e6) / 1e6), 'two connections each: a third of the plan each')
  t.ok(s.agents.every(a => a.requests > 0 && a.lost === null), 'every agent sent load and none was lost')
  t.equal(s.agents.reduce((n, a) => n + a.requests, 0), s.totals.requests, 'the agents\' requests add up to the total')
  t.equal(s.agents.reduce((n, a) => n + a.errors, 0), s.totals.errors)
  t.equal(s.workers, 3)

  // each agent's own account of what it measured (agent.json), against the coordinator's
  const own = await Promise.all(agents.map(async (_, i) => JSON.parse(await readFile(join(out, `agent-${i}`, 'agent.json'), 'utf8')) as AgentReport))
  t.same(own.map(a => a.requests).sort(), s.agents.map(a => a.requests).sort(), 'each agent\'s count arrived whole')
  t.same(Object.fromEntries(own.map(a => [a.agentId, a.requests])), Object.fromEntries(s.agents.map(a => [a.id, a.requests])), 'and under its own id')
  const all = hdr.build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, autoResize: true })
  for (const a of own) all.add(hdr.decodeFromCompressedBase64(a.latency!, 64))
  t.equal(all.totalCount, s.totals.requests, 'every response has a latency')
  const p99 = all.getValueAtPercentile(99) / 1000
  t.ok(Math.abs(s.totals.latency.p99! - p99) <= p99 * 0.001 + 0.001, `merged p99 ${s.totals.latency.p99} ms = p99 of the agents' latencies together ${p99} ms (within HDR precision)`)

  // and against the site: every answered request counted once. Not counted:
  // the requests in flight when a connection loop stops (at most one per
  // connection) and each agent's reachability probe (one GET) before the start
  const served = [...site.gets.values(), ...site.posts.values()].reduce((a, b) => a + b, 0) + site.rejected.length
  t.ok(served >= s.totals.requests + 3 && served - s.totals.requests <= 6 + 3, `the site answered ${served}, the run counted ${s.totals.requests}`)
  t.same(site.rejected, [], 'every agent\'s writes were accepted')
  t.equal(new Set(site.bodies).size, site.bodies.length, 'no two agents sent the same write')
  t.equal(s.thresholds.length, 2, 'thresholds evaluated once, over the merged stream')
  t.ok(s.thresholds.every(x => x.pass))
  t.match(coordinator.stdout, /^agent-1\s+\S+\s+1\s+33\.3%\s+[\d,]+/m, 'the end-of-run table lists the agents')
  t.ok(s.timeline.length >= 2 && s.timeline.reduce((n, e) => n + e.requests, 0) <= s.totals.requests, 'one merged timeline')
  const html = await readFile(join(out, 'run', 'report.html'), 'utf8')
  t.match(html, /<h2>Agents<\/h2>/)
})

t.test('a failed abort threshold stops every agent, and the run fails once', async t => {
  // half the pages fail: errors over 10% from the first second on
  const site = await startFakeSite({ failPaths: { '/': 503, '/news': 503 } })
  t.teardown(() => site.close())
  const out = join(OUT, 'abort')
  const { coordinator, agents } = await coordinatorAndAgents(t, ['browse', '--url', site.url, '--duration', '60', '--connections', '3', '--abort-on', 'errors<10%', '--threshold', 'p99<10000'], 3, out)
  const code = await coordinator.exited
  const agentCodes = await Promise.all(agents.map(a => a.exited))
  t.equal(code, 1, 'the run fails')
  t.match(coordinator.stderr, /stopped: abort threshold errors<10% failed at \d+ s/)
  t.same(agentCodes, [0, 0, 0], 'every agent stopped when told, and reported in full')
  const s = JSON.parse(await readFile(join(out, 'run', 'summary.json'), 'utf8')) as Summary
  t.equal(s.abortedBy?.expr, 'errors<10%')
  t.ok(s.duration < 20, `stopped long before the planned 60 s (${s.duration} s)`)
  t.ok(s.agents.every(a => a.lost === null && a.requests > 0), 'no agent lost: they all sent their last report')
  t.same(s.thresholds.map(x => [x.expr, x.pass]), [['p99<10000', true], ['errors<10%', false]], 'one verdict per threshold for the whole run')
  // nothing is sent once the agents have exited
  const before = [...site.gets.values()].reduce((a, b) => a + b, 0)
  await new Promise(resolve => setTimeout(resolve, 500))
  t.equal([...site.gets.values()].reduce((a, b) => a + b, 0), before, 'the site hears nothing more')
})
