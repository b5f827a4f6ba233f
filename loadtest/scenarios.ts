// Built-in scenarios and JSON scenario files. A scenario is data: a list of
// stages (how hard to push, over time) and a weighted mix of actions (what a
// visitor does). Stage durations and targets are either absolute numbers or
// percentages of --duration and of the target (--connections, or --rate in
// the open model), so one file serves a 30 s smoke run and a 10 min rehearsal.
import { readFile } from 'node:fs/promises'
import { basename } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

const Amount = Type.Union([
  Type.Number({ exclusiveMinimum: 0 }),
  Type.String({ pattern: '^\\d+(\\.\\d+)?%$' })
], { description: 'absolute number, or "N%" of the whole (duration or target)' })

export const StageSpecSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 40, pattern: '^[A-Za-z0-9_.-]+$' }),
  duration: Amount,
  from: Type.Optional(Amount),
  to: Amount
}, { additionalProperties: false })

const Weight = Type.Number({ minimum: 0 })
export const MixItemSchema = Type.Union([
  Type.Object({ action: Type.Literal('browse'), weight: Weight }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('page'), path: Type.String({ pattern: '^/' }), weight: Weight }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('comment'), weight: Weight }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('signup'), weight: Weight }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('completion'), weight: Weight }, { additionalProperties: false }),
  // one fixed request, the same bytes every time (autocannon's one-URL run: -m, -H, -b)
  Type.Object({
    action: Type.Literal('request'),
    method: Type.String({ pattern: '^[A-Za-z]+$', maxLength: 20 }),
    path: Type.String({ pattern: '^/' }),
    headers: Type.Optional(Type.Record(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), Type.String({ pattern: '^[^\\r\\n]*$' }))),
    body: Type.Optional(Type.String()),
    weight: Weight
  }, { additionalProperties: false })
])

export const ScenarioFileSchema = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 60 })),
  description: Type.Optional(Type.String()),
  zipf: Type.Optional(Type.Number({ minimum: 0, maximum: 5, description: 'Zipf exponent s for browse' })),
  stages: Type.Array(StageSpecSchema, { minItems: 1, maxItems: 50 }),
  mix: Type.Array(MixItemSchema, { minItems: 1, maxItems: 50 })
}, { additionalProperties: false })

export type AmountSpec = Static<typeof Amount>
export type StageSpec = Static<typeof StageSpecSchema>
export type MixItem = Static<typeof MixItemSchema>
export type MixAction = MixItem['action']
export const WRITE_ACTIONS: ReadonlySet<MixAction> = new Set(['comment', 'signup', 'completion'])

export interface Scenario {
  name: string
  description: string
  zipf: number
  stages: StageSpec[]
  mix: MixItem[]
}

const STEADY: StageSpec[] = [{ name: 'steady', duration: '100%', to: '100%' }]
// The Hour of Code curve: from almost nobody to the full crowd in seconds,
// a plateau, then the crowd leaves.
const SPIKE: StageSpec[] = [
  { name: 'ramp', duration: '20%', from: '2%', to: '100%' },
  { name: 'hold', duration: '60%', to: '100%' },
  { name: 'down', duration: '20%', from: '100%', to: '5%' }
]

export const BUILTIN_SCENARIOS: Readonly<Record<string, Scenario>> = {
  browse: {
    name: 'browse',
    description: 'visitors reading: sitemap pages, Zipf popularity (home and news index most often)',
    zipf: 1,
    stages: STEADY,
    mix: [{ action: 'browse', weight: 1 }]
  },
  spike: {
    name: 'spike',
    description: 'browse traffic ramping from near zero to the target in seconds, hold, then down',
    zipf: 1,
    stages: SPIKE,
    mix: [{ action: 'browse', weight: 1 }]
  },
  mixed: {
    name: 'mixed',
    description: 'browse plus a 10% write share: comments, event sign-ups, tutorial completions',
    zipf: 1,
    stages: STEADY,
    mix: [
      { action: 'browse', weight: 90 },
      { action: 'comment', weight: 4 },
      { action: 'signup', weight: 3 },
      { action: 'completion', weight: 3 }
    ]
  },
  'signup-rush': {
    name: 'signup-rush',
    description: 'mostly event sign-ups and tutorial completions, with the sign-up form and some browsing',
    zipf: 1,
    stages: SPIKE,
    mix: [
      { action: 'signup', weight: 45 },
      { action: 'completion', weight: 25 },
      { action: 'page', path: '/events/new', weight: 15 },
      { action: 'browse', weight: 15 }
    ]
  }
}

export class ScenarioError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ScenarioError'
  }
}

/** Validates a parsed scenario document; names every problem with its JSON path. */
export function validateScenario (doc: unknown, fallbackName: string): Scenario {
  if (!Value.Check(ScenarioFileSchema, doc)) {
    const problems = [...Value.Errors(ScenarioFileSchema, doc)]
      .slice(0, 8)
      .map(e => `${e.path || '/'}: ${e.message}`)
    throw new ScenarioError(`invalid scenario ${fallbackName}:\n  ${problems.join('\n  ')}`)
  }
  const names = new Set<string>()
  for (const s of doc.stages) {
    if (names.has(s.name)) throw new ScenarioError(`invalid scenario ${fallbackName}: stage name "${s.name}" is used twice`)
    names.add(s.name)
  }
  if (!doc.mix.some(m => m.weight > 0)) throw new ScenarioError(`invalid scenario ${fallbackName}: every mix weight is 0`)
  return {
    name: doc.name ?? fallbackName,
    description: doc.description ?? `custom scenario from ${fallbackName}`,
    zipf: doc.zipf ?? 1,
    stages: doc.stages,
    mix: doc.mix
  }
}

export function isScenarioFile (arg: string): boolean {
  return arg.endsWith('.json')
}

/** A built-in scenario by name, or a JSON scenario file by path. */
export async function loadScenario (arg: string): Promise<Scenario> {
  const builtin = Object.hasOwn(BUILTIN_SCENARIOS, arg) ? BUILTIN_SCENARIOS[arg] : undefined
  if (builtin) return structuredClone(builtin)
  if (!isScenarioFile(arg)) {
    throw new ScenarioError(`unknown scenario "${arg}" (built-in: ${Object.keys(BUILTIN_SCENARIOS).join(', ')}; or a path to a .json scenario file)`)
  }
  let text: string
  try {
    text = await readFile(arg, 'utf8')
  } catch (err) {
    throw new ScenarioError(`cannot read scenario file ${arg}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new ScenarioError(`scenario file ${arg} is not valid JSON: ${(err as Error).message}`)
  }
  return validateScenario(doc, basename(arg, '.json'))
}

/** Whether an item of the mix writes: a form post, or a fixed request with a method other than GET/HEAD. */
export function isWrite (m: MixItem): boolean {
  if (m.action === 'request') return !/^(GET|HEAD)$/i.test(m.method)
  return WRITE_ACTIONS.has(m.action)
}

/** Share of requests that are writes (0..1). */
export function writeShare (mix: readonly MixItem[]): number {
  const total = mix.reduce((s, m) => s + m.weight, 0)
  const writes = mix.filter(isWrite).reduce((s, m) => s + m.weight, 0)
  return total > 0 ? writes / total : 0
}
