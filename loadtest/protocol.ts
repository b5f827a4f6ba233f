// The coordinator ⇄ agent protocol: JSON over HTTP, every request made by
// the agent (an agent behind NAT or in a pod needs no inbound port).
//
//   GET  /v1/time                       → { now }              clock offset (Cristian's algorithm)
//   POST /v1/join        JoinRequest    → JoinAccepted | 409 Refusal (version mismatch, run full)
//   GET  /v1/agents/:id/assignment      → Assignment | 204 (poll again) | 410 Refusal (run cancelled)
//   POST /v1/agents/:id/refuse  Refusal → 204             the agent cannot run it (scenario error, unreachable URL)
//   POST /v1/agents/:id/reports ReportBatch → ReportAnswer  per-second results; the answer says whether to stop
//
// With a token (--token / LOADTEST_TOKEN; required when the coordinator
// listens off loopback) every request carries `Authorization: Bearer <token>`
// and one without it, or with another, gets 401 Refusal 'unauthorized'.
//
// Agent and coordinator must run the same flashcrowd version: a report is
// only as good as both sides' reading of the plan, the scenario and the
// histogram format.
import { readFileSync } from 'node:fs'
import type { Scenario } from './scenarios.js'
import type { SliceEvent } from './slice-runner.js'
import type { PlannedStage, Slice } from './stages.js'
import type { Target } from './requests.js'
import type { ArrivalProcess } from './arrivals.js'

/** Bumped on any incompatible change of the messages below. */
export const PROTOCOL = 2

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface JoinRequest {
  protocol: number
  version: string
  host: string
  /** generator threads the agent runs */
  workers: number
}

export interface JoinAccepted {
  agentId: string
  protocol: number
  version: string
}

export type RefusalCode = 'unauthorized' | 'version-mismatch' | 'full' | 'cancelled' | 'scenario' | 'unreachable' | 'bad-request' | 'unknown-agent'

export interface Refusal {
  error: RefusalCode
  message: string
}

export interface Assignment {
  runId: string
  url: string
  scenario: Scenario
  pages: string[]
  plan: PlannedStage[]
  /** this agent's slice of every step */
  slice: Slice
  seed: number
  timeout: number
  target: Target
  /** open model: how arrivals are spaced (absent: even) */
  arrivals?: ArrivalProcess
  /** the common start, epoch ms on the coordinator's clock */
  startAt: number
}

export interface ReportBatch {
  events: Array<{ worker: number, event: SliceEvent }>
  /** the agent's threads have all finished: nothing follows */
  done: boolean
  /** why the agent stopped early, when it did */
  error?: string
}

export interface ReportAnswer {
  stop: boolean
  reason?: string
}

/** Why two sides cannot work together, or null when they can. */
export function versionMismatch (mine: { protocol: number, version: string }, theirs: { protocol?: unknown, version?: unknown }, who: string): string | null {
  if (theirs.protocol === mine.protocol && theirs.version === mine.version) return null
  return `version mismatch: ${who} runs flashcrowd ${String(theirs.version)} (loadtest protocol ${String(theirs.protocol)}), this side runs ${mine.version} (protocol ${mine.protocol}); run the same version on the coordinator and every agent`
}
