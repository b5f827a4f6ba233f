// Exit codes, by spawning the CLI the way npm run loadtest does.
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { parseCommand, parseDuration } from '../../loadtest/cli.js'
import { startFakeSite } from './fake-site.js'

const ROOT = join(import.meta.dirname, '../..')

function cli (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'loadtest/cli.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d })
    child.stderr.on('data', (d: Buffer) => { stderr += d })
    // generous: a loaded machine takes seconds to start a TypeScript process and its generator threads
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

t.test('parseDuration', async t => {
  t.equal(parseDuration('30'), 30)
  t.equal(parseDuration('45s'), 45)
  t.equal(parseDuration('2m'), 120)
  t.equal(parseDuration('1m30s'), 90)
  t.equal(parseDuration('500ms'), 0.5)
  t.throws(() => parseDuration('soon'), /bad duration/)
  t.throws(() => parseDuration('5x'), /bad duration/)
})

t.test('usage errors exit 2 with the usage text', async t => {
  const cases: Array<[string[], RegExp]> = [
    [['nope', '--url', 'http://127.0.0.1:9'], /unknown scenario "nope"/],
    [['browse'], /missing --url/],
    [['--url', 'http://127.0.0.1:9'], /missing <scenario>/],
    [['browse', '--url', 'http://127.0.0.1:9', '--frobnicate'], /Unknown option '--frobnicate'/],
    [['browse', '--url', 'http://127.0.0.1:9', '--connections', 'many'], /--connections must be a number/],
    [['browse', '--url', 'http://127.0.0.1:9', '--threshold', 'p99<<3'], /bad threshold "p99<<3"/],
    [['browse', '--url', 'ftp://127.0.0.1:9'], /must be http/],
    [['browse', '--url', 'http://127.0.0.1:9', '--tier', 'db=2', '--plan-users', '10'], /bad --tier/]
  ]
  // three at a time: each is a TypeScript process to start
  for (let i = 0; i < cases.length; i += 3) {
    await Promise.all(cases.slice(i, i + 3).map(async ([args, message]) => {
      const r = await cli(args)
      t.equal(r.code, 2, `${args.join(' ')} → 2`)
      t.match(r.stderr, message)
      t.match(r.stderr, /usage: npm run loadtest -- <scenario> --url <base>/)
    }))
  }
  const help = await cli(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /signup-rush/)
})

t.test('a run exits 0 when thresholds hold, 1 naming the one that failed', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const base = ['browse', '--url', site.url, '--duration', '1', '--connections', '2']
  const [ok, failed] = await Promise.all([
    cli([...base, '--threshold', 'p99<5000', '--threshold', 'errors<1%']),
    cli([...base, '--threshold', 'p99<5000', '--threshold', 'rps{stage=steady}>100000000', '--quiet'])
  ])
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /latency \(ms\)\s+p50\s+p90\s+p99\s+p99\.9\s+max/, 'end-of-run table')
  t.match(ok.stdout, /result: PASS/)
  t.match(ok.stderr, /^\s+1s\s+steady\s+2 conn\s+[\d,.]+ req\/s\s+p99/m, 'live per-second progress on stderr')
  t.equal(failed.code, 1)
  t.match(failed.stderr, /threshold failed: rps\{stage=steady\}>100000000/)
  t.match(failed.stdout, /✗ FAIL\s+rps\{stage=steady\}>100000000/)
  t.notMatch(failed.stderr, /req\/s\s+p99/, '--quiet: no progress lines')
})

t.test('a site that cannot be reached exits 1 with a reason', async t => {
  const r = await cli(['browse', '--url', 'http://127.0.0.1:9', '--duration', '1'])
  t.equal(r.code, 1)
  t.match(r.stderr, /error: cannot read the sitemap at http:\/\/127\.0\.0\.1:9\/sitemap\.xml/)
})

t.test('distributed, agent and knee flags: refused when they do not fit together', async t => {
  const io = { stdout: process.stdout, stderr: process.stderr }
  const url = ['browse', '--url', 'http://127.0.0.1:9']
  const cases: Array<[string[], RegExp]> = [
    [[...url, '--agents', '2'], /--agents needs --listen/],
    [[...url, '--listen', '127.0.0.1:7700'], /--listen is for a coordinator/],
    [[...url, '--agents', '2', '--listen', 'nowhere'], /bad --listen "nowhere"/],
    [['agent'], /an agent needs --join/],
    [['agent', '--join', 'http://127.0.0.1:7700', '--url', 'http://x'], /an agent takes its URL and plan from the coordinator/],
    [['agent', '--join', 'ftp://127.0.0.1:7700'], /--join must be an http:\/\/ URL/],
    [[...url, '--join', 'http://127.0.0.1:7700'], /--join is for agents/],
    [[...url, '--knee', 'p99<250'], /a knee search needs --rate/],
    [[...url, '--knee', 'p99<250', '--rate', '10', '--threshold', 'errors<1%'], /breaks its thresholds on purpose/],
    [[...url, '--knee', 'p99<250', '--rate', '10', '--duration', '30'], /set --step-duration/],
    [[...url, '--knee', 'p99{endpoint=/}<250', '--rate', '10'], /judged over each whole step/],
    [[...url, '--knee', 'p99<250', '--rate', '10', '--rate-step', 'x0.5'], /a factor must be above 1/],
    [[...url, '--rate-step', '10'], /belong to a knee search/],
    [[...url, '--knee', 'p99<250', '--rate', '10', '--frontend-url', 'http://127.0.0.1:3000', '--agents', '2', '--listen', '127.0.0.1:0'], /searches run from one machine/],
    [[...url, '--workers', '0'], /--workers must be >= 1/],
    [[...url, '--max-connections', '10'], /belong to the open model/],
    [[...url, '--arrivals', 'poisson'], /belong to the open model/],
    [[...url, '--rate', '10', '--arrivals', 'bursty'], /--arrivals must be even or poisson/],
    [[...url, '--rate', '10', '--connections', '5', '--max-connections', '6'], /--connections is --max-connections/],
    [[...url, '--timeout', '0.5'], /--timeout must be >= 1/]
  ]
  for (const [args, message] of cases) await t.rejects(parseCommand(args, io), message, args.join(' '))
  const ok = await parseCommand([...url, '--knee', 'p99<250', '--rate', '50', '--rate-step', 'x1.5', '--max-rate', '400'], io)
  t.equal(ok.kind, 'run')
  if (ok.kind === 'run') {
    t.same(ok.knee?.step, { factor: 1.5 })
    t.equal(ok.knee?.pool, 400, 'the knee\'s connection cap: a second of arrivals at the max rate')
  }
  const open = await parseCommand([...url, '--rate', '300', '--arrivals', 'poisson'], io)
  t.same(open.kind === 'run' ? [open.opts.model, open.opts.pool, open.opts.arrivals] : null, ['open', 300, 'poisson'], 'open model: a second of arrivals as the default cap')
  const capped = await parseCommand([...url, '--rate', '300', '--max-connections', '1200'], io)
  t.equal(capped.kind === 'run' ? capped.opts.pool : null, 1200)
  const legacy = await parseCommand([...url, '--rate', '300', '--connections', '40'], io)
  t.equal(legacy.kind === 'run' ? legacy.opts.pool : null, 40, 'in the open model --connections is the cap')
  const agent = await parseCommand(['agent', '--join', 'http://127.0.0.1:7700', '--workers', '3'], io)
  t.same(agent.kind === 'agent' ? [agent.agent.join, agent.agent.workers] : null, ['http://127.0.0.1:7700/', 3])
})

t.test('off loopback, a distributed run needs its shared secret on both sides (--token or LOADTEST_TOKEN)', async t => {
  const io = { stdout: process.stdout, stderr: process.stderr, env: {} }
  const secret = 'sixteen-chars-or-more'
  const run = ['browse', '--url', 'http://127.0.0.1:9', '--agents', '2']
  await t.rejects(parseCommand([...run, '--listen', '0.0.0.0:7700'], io), /--listen 0\.0\.0\.0:7700 takes agents from other machines: set the run's shared secret with --token <t> or LOADTEST_TOKEN/)
  await t.rejects(parseCommand([...run, '--listen', ':7700'], io), /takes agents from other machines/, 'every interface')
  await t.rejects(parseCommand([...run, '--listen', '10.0.0.5:7700'], io), /takes agents from other machines/)
  await t.rejects(parseCommand(['agent', '--join', 'http://10.0.0.5:7700'], io), /--join 10\.0\.0\.5:7700 is another machine: set the run's shared secret/)
  await t.rejects(parseCommand([...run, '--listen', '0.0.0.0:7700', '--token', 'short'], io), /--token must be at least 16 characters/)
  await t.rejects(parseCommand([...run, '--listen', '0.0.0.0:7700'], { ...io, env: { LOADTEST_TOKEN: 'short' } }), /LOADTEST_TOKEN: .*16/)
  await t.rejects(parseCommand(['browse', '--url', 'http://127.0.0.1:9', '--token', secret], io), /--token is for a distributed run/)
  for (const listen of ['127.0.0.1:0', '[::1]:7700', 'localhost:7700']) {
    t.equal((await parseCommand([...run, '--listen', listen], io)).kind, 'run', `${listen}: loopback, no token needed`)
  }
  const flag = await parseCommand(['agent', '--join', 'http://10.0.0.5:7700', '--token', secret], io)
  t.equal(flag.kind === 'agent' ? flag.agent.token : null, secret)
  const env = await parseCommand(['agent', '--join', 'http://loadtest-coordinator.svc:7700'], { ...io, env: { LOADTEST_TOKEN: secret } })
  t.equal(env.kind === 'agent' ? env.agent.token : null, secret, 'LOADTEST_TOKEN when no --token')
  t.equal((await parseCommand([...run, '--listen', '0.0.0.0:7700'], { ...io, env: { LOADTEST_TOKEN: secret } })).kind, 'run')
})
