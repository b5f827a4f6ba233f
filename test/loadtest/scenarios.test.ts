import t from 'tap'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BUILTIN_SCENARIOS, loadScenario, ScenarioError, validateScenario, writeShare } from '../../loadtest/scenarios.js'

t.test('built-in scenarios are valid scenario documents', async t => {
  t.same(Object.keys(BUILTIN_SCENARIOS).sort(), ['browse', 'mixed', 'signup-rush', 'spike'])
  for (const [name, s] of Object.entries(BUILTIN_SCENARIOS)) {
    const { name: _n, ...doc } = s
    t.doesNotThrow(() => validateScenario({ ...doc, name }, name), name)
  }
  t.equal(writeShare(BUILTIN_SCENARIOS.browse.mix), 0)
  t.equal(writeShare(BUILTIN_SCENARIOS.mixed.mix), 0.1, 'mixed writes 10%')
  t.ok(writeShare(BUILTIN_SCENARIOS['signup-rush'].mix) >= 0.6, 'signup-rush is mostly writes')
  t.same(BUILTIN_SCENARIOS.spike.stages.map(s => s.name), ['ramp', 'hold', 'down'])
})

t.test('loadScenario: built-in names, JSON files, clear errors', async t => {
  const s = await loadScenario('spike')
  s.stages.pop()
  t.equal(BUILTIN_SCENARIOS.spike.stages.length, 3, 'callers get a copy')
  await t.rejects(loadScenario('nope'), { name: 'ScenarioError', message: /unknown scenario "nope".*browse, spike, mixed, signup-rush/ })

  const dir = await mkdtemp(join(tmpdir(), 'lt-scen-'))
  const good = join(dir, 'campaign.json')
  await writeFile(good, JSON.stringify({
    description: 'landing page rush',
    zipf: 1.2,
    stages: [{ name: 'warm', duration: 5, to: 2 }, { name: 'rush', duration: '50%', from: '10%', to: '100%' }],
    mix: [{ action: 'page', path: '/events/new', weight: 2 }, { action: 'signup', weight: 1 }]
  }))
  const c = await loadScenario(good)
  t.equal(c.name, 'campaign', 'named after the file')
  t.equal(c.zipf, 1.2)
  t.equal(c.stages[1].from, '10%')

  const bad = join(dir, 'bad.json')
  await writeFile(bad, JSON.stringify({ stages: [{ name: 'x', duration: -1, to: '5' }], mix: [{ action: 'dance', weight: 1 }], extra: 1 }))
  const err = await loadScenario(bad).catch((e: unknown) => e) as ScenarioError
  t.ok(err instanceof ScenarioError)
  t.match(err.message, /invalid scenario bad/)
  t.match(err.message, /\/stages\/0\/duration/, 'names the bad field by its JSON path')

  const dup = join(dir, 'dup.json')
  await writeFile(dup, JSON.stringify({ stages: [{ name: 'a', duration: 1, to: 1 }, { name: 'a', duration: 1, to: 1 }], mix: [{ action: 'browse', weight: 1 }] }))
  await t.rejects(loadScenario(dup), /stage name "a" is used twice/)

  const zero = join(dir, 'zero.json')
  await writeFile(zero, JSON.stringify({ stages: [{ name: 'a', duration: 1, to: 1 }], mix: [{ action: 'browse', weight: 0 }] }))
  await t.rejects(loadScenario(zero), /every mix weight is 0/)

  const notJson = join(dir, 'broken.json')
  await writeFile(notJson, '{ stages: ')
  await t.rejects(loadScenario(notJson), /not valid JSON/)
  await t.rejects(loadScenario(join(dir, 'missing.json')), /cannot read scenario file/)
})
