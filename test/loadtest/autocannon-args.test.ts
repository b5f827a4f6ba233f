import t from 'tap'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { isAutocannonCommand, parseAutocannonCommand, parseHeader, runningBanner } from '../../loadtest/autocannon-args.js'
import { parseDuration } from '../../loadtest/cli.js'

const parse = (argv: string[]) => parseAutocannonCommand(argv, { parseDuration, stderr: new PassThrough() })

t.test('an autocannon command line is a bare URL without --url', async t => {
  t.ok(isAutocannonCommand(['-c', '100', '-d', '10', 'http://127.0.0.1:8080/news']))
  t.ok(isAutocannonCommand(['https://example.org/']))
  t.notOk(isAutocannonCommand(['browse', '--url', 'http://127.0.0.1:8080']))
  t.notOk(isAutocannonCommand(['browse', '--url=http://127.0.0.1:8080']))
  t.notOk(isAutocannonCommand(['agent', '--join', 'http://127.0.0.1:7700']))
  t.notOk(isAutocannonCommand(['compare', 'a.json', 'b.json']))
  t.notOk(isAutocannonCommand(['browse', '--connections', '10']))
})

t.test('autocannon\'s flags map onto a run', async t => {
  const { opts, view } = await parse(['-c', '100', '-d', '10', 'http://127.0.0.1:8080/news?page=2'])
  t.match(opts, { url: 'http://127.0.0.1:8080/', duration: 10, model: 'closed', target: 100, pool: 100, timeout: 10, workers: 1, pages: ['/news?page=2'], amount: undefined })
  t.same(opts.scenario.mix, [{ action: 'request', method: 'GET', path: '/news?page=2', headers: {}, weight: 1 }])
  t.match(view, { url: 'http://127.0.0.1:8080/news?page=2', connections: 100, workers: 0, json: false, progress: true })
  t.equal(runningBanner(view), 'Running 10s test @ http://127.0.0.1:8080/news?page=2\n100 connections\n\n')

  const d = await parse(['http://h/'])
  t.match(d.opts, { duration: 10, target: 10 }, 'autocannon\'s defaults: 10 connections, 10 s')
  t.equal((await parse(['-d', '2m', 'http://h/'])).opts.duration, 120)

  const rate = await parse(['-R', '50', '-c', '100', '-w', '2', '-j', 'http://h/'])
  t.match(rate.opts, { model: 'open', target: 50, pool: 50, workers: 2 })
  t.match(rate.view, { connections: 50, workers: 2, json: true, progress: false }, 'as autocannon: no more connections than the rate')

  const amount = await parse(['-a', '1000', '-c', '4', '-m', 'post', '-H', 'content-type=application/json', '-H', 'X-Token: a=b', '--header', 'x-c:3', '-b', '{"a":1}', '-T', 't', '-l', 'http://h/v1/x'])
  t.match(amount.opts, { amount: 1000, duration: 3600, target: 4 })
  t.same(amount.opts.scenario.mix, [{ action: 'request', method: 'POST', path: '/v1/x', headers: { 'content-type': 'application/json', 'X-Token': 'a=b', 'x-c': '3' }, body: '{"a":1}', weight: 1 }])
  t.match(amount.view, { amount: 1000, title: 't', latencyTable: true })
  t.equal(runningBanner(amount.view), 'Running 1000 requests test @ http://h/v1/x\n4 connections\n\n')
  t.equal((await parse(['-a', '10', '-c', '2', '-d', '30', 'http://h/'])).opts.duration, 30, '-d caps an amount run')

  const dir = await mkdtemp(join(tmpdir(), 'flashcrowd-ac-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'body.json'), '{"from":"file"}')
  t.match((await parse(['-m', 'PUT', '-i', join(dir, 'body.json'), 'http://h/'])).opts.scenario.mix[0], { body: '{"from":"file"}' })
  t.equal((await parse(['-p', '1', 'http://h/'])).view.connections, 10, '-p 1 is what runs')
})

t.test('headers as autocannon splits them', async t => {
  t.same(parseHeader('a=b'), ['a', 'b'])
  t.same(parseHeader('Accept: text/html'), ['Accept', 'text/html'])
  t.same(parseHeader('x=a:b'), ['x', 'a:b'], 'split at the first of = and :')
  t.throws(() => parseHeader('nothing'), /An HTTP header was not correctly formatted: nothing/)
  t.throws(() => parseHeader('=v'), /not correctly formatted/)
})

t.test('what this runner cannot do is refused by name', async t => {
  const cases: Array<[string[], RegExp]> = [
    [['-p', '10', 'http://h/'], /-p\/--pipelining above 1 is not supported/],
    [['-r', '5', 'http://h/'], /-r\/--connectionRate is an autocannon flag this runner does not take/],
    [['--forever', 'http://h/'], /-f\/--forever/],
    [['-S', '/tmp/s', 'http://h/'], /Unix socket/],
    [['-a', '5', '-c', '10', 'http://h/'], /connections cannot be greater than amount/],
    [['-a', '50', '-R', '10', 'http://h/'], /-a\/--amount with -R/],
    [['-c', '0', 'http://h/'], /-c\/--connections must be an integer >= 1/],
    [['-d', 'soon', 'http://h/'], /-d\/--duration: bad duration/],
    [['-m', 'GE T', 'http://h/'], /not an HTTP method/],
    [['-b', 'x', '-i', '/etc/hostname', 'http://h/'], /-b or -i, not both/],
    [['http://h/', 'http://i/'], /one URL expected/],
    [['--frobnicate', 'http://h/'], /Unknown option '--frobnicate'/]
  ]
  for (const [argv, message] of cases) await t.rejects(parse(argv), message, argv.join(' '))
})
