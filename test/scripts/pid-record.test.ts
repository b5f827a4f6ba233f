/**
 * Stopping the local cluster by its record (scripts/pid-record.ts), with real
 * processes: every recorded node stops, however many cluster.json had, in
 * role order (front door, caches, frontends, backends, replica); one that
 * ignores its stop signal is killed after the grace period; a PID that now
 * belongs to a process started after the record is left alone; and
 * `npm run cluster -- stop` does all of it from another shell.
 */
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, utimes, writeFile, mkdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PidRecorder, processStartedAt, readPidRecord, stopGroups, stopRecorded } from '../../scripts/pid-record.js'
import { spawnScript } from '../helpers/spawn.js'

/** A stand-in node: notes its name in `log` when asked to stop (unless it ignores that), then exits. */
async function node (t: Test, name: string, log: string, options: { ignoreStop?: boolean } = {}): Promise<ChildProcess> {
  const code = options.ignoreStop
    ? "process.on('SIGTERM', () => {}); process.on('SIGINT', () => {})"
    : `for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => { require('fs').appendFileSync(${JSON.stringify(log)}, ${JSON.stringify(name)} + ' ' + s + '\\n'); process.exit(0) })`
  const child = spawn(process.execPath, ['-e', `${code}; setInterval(() => {}, 60000); console.log('ready')`], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  await once(child.stdout!, 'data')
  return child
}

const larger = ['front', 'cache1', 'cache2', 'cache3', 'frontend1', 'frontend2', 'frontend3', 'frontend4', 'backend1', 'backend2', 'backend3', 'replica']

t.test('stop groups follow the roles, whatever the number of nodes', async (t) => {
  const shuffled = [...larger, 'cache10', 'extra'].sort(() => Math.random() - 0.5)
  t.same(stopGroups(shuffled), [
    ['front'],
    ['cache1', 'cache2', 'cache3', 'cache10'],
    ['frontend1', 'frontend2', 'frontend3', 'frontend4'],
    ['backend1', 'backend2', 'backend3'],
    ['replica'],
    ['extra']
  ])
})

t.test('every recorded node of a larger cluster stops, in role order', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-pids-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'stops.log')
  const children = Object.fromEntries(await Promise.all(larger.map(async (name) => [name, await node(t, name, log)] as const)))
  const recorder = new PidRecorder(path.join(dir, 'pids.json'))
  await recorder.write(Object.fromEntries(larger.map((name) => [name, children[name].pid])))
  const record = await readPidRecord(recorder.file)
  t.same(Object.keys(record!.pids).sort(), [...larger].sort())

  const stopped = await stopRecorded(record!.pids, record!.writtenAt, { signalOf: (n) => n === 'replica' ? 'SIGINT' : 'SIGTERM', graceMs: 10_000 })
  t.same([...stopped].sort(), [...larger].sort(), 'every recorded node was stopped')
  for (const name of larger) t.equal(processStartedAt(children[name].pid!), undefined, `${name} is gone`)
  const lines = (await readFile(log, 'utf8')).trim().split('\n').map((l) => l.split(' '))
  const rank = (name: string) => stopGroups(larger).findIndex((g) => g.includes(name))
  const ranks = lines.map(([name]) => rank(name))
  t.same(ranks, [...ranks].sort((a, b) => a - b), `stopped group by group: ${lines.map(([n]) => n).join(' ')}`)
  t.same(lines.find(([n]) => n === 'replica')?.[1], 'SIGINT', 'the replica got its own stop signal')
})

t.test('a node that ignores its stop signal is killed after the grace period', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-pids-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const stubborn = await node(t, 'backend1', path.join(dir, 'stops.log'), { ignoreStop: true })
  const began = Date.now()
  const stopped = await stopRecorded({ backend1: stubborn.pid! }, Date.now(), { graceMs: 300 })
  t.same(stopped, ['backend1'])
  t.equal(processStartedAt(stubborn.pid!), undefined, 'gone')
  t.ok(Date.now() - began < 10_000)
})

t.test('a PID now held by a process started after the record is left alone', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-pids-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const recorder = new PidRecorder(path.join(dir, 'pids.json'))
  const stranger = await node(t, 'stranger', path.join(dir, 'stops.log'))
  await recorder.write({ cache1: stranger.pid })
  // The record is older than the process that holds the number now (as after a reboot or a wrap-around).
  const past = new Date(Date.now() - 60_000)
  await utimes(recorder.file, past, past)
  const record = await readPidRecord(recorder.file)
  t.same(await stopRecorded(record!.pids, record!.writtenAt, { graceMs: 300 }), [])
  t.not(processStartedAt(stranger.pid!), undefined, 'still running')
})

t.test('npm run cluster -- stop stops the supervisor and every recorded node left running', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-cluster-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const front = 1 + Math.floor(Math.random() * 1000)
  const configFile = path.join(dir, 'cluster.json')
  await writeFile(configFile, JSON.stringify({ front, caches: [2], frontends: [3], backends: [4], replica: 5, haproxyStats: 6 }))
  const stateDir = path.join(dir, 'cluster', String(front))
  await mkdir(stateDir, { recursive: true })
  const log = path.join(dir, 'stops.log')
  // More nodes than cluster.json names: the record decides.
  const names = ['cluster', 'front', 'cache1', 'cache2', 'frontend1', 'frontend2', 'backend1', 'backend2', 'backend3']
  const children = Object.fromEntries(await Promise.all(names.map(async (name) => [name, await node(t, name, log)] as const)))
  await new PidRecorder(path.join(stateDir, 'pids.json')).write(Object.fromEntries(names.map((n) => [n, children[n].pid])))

  const run = spawnScript('scripts/cluster.ts', { CLUSTER_CONFIG: configFile, FLASHCROWD_STATE_DIR: dir }, ['stop'])
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 0, run.output())
  for (const name of names) t.equal(processStartedAt(children[name].pid!), undefined, `${name} is gone`)
  const order = (await readFile(log, 'utf8')).trim().split('\n').map((l) => l.split(' ')[0])
  t.equal(order[0], 'cluster', 'the supervisor first')
  t.equal(order[1], 'front', 'then the front door')
  t.same(order.slice(-3).sort(), ['backend1', 'backend2', 'backend3'], 'the backends last')
  t.notOk(existsSync(path.join(stateDir, 'pids.json')), 'the record is removed')
  t.match(run.output(), /stopped: cluster, front, /)
})
