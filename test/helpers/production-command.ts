/**
 * What a production command line (compose `command`, a Kubernetes container's
 * `args`, the image's CMD) runs: `node dist/<path>.js`, the build of
 * `<path>.ts`, and which configuration schema that process reads.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { ROOT } from './spawn.js'

/** Entry points the deployments may run, by source, with the schema each reads (ROLE_SCHEMAS' names, `migrate`). */
export const ENTRY_POINTS: Record<string, string> = {
  'backend/server.ts': 'backend',
  'frontend/server.ts': 'frontend',
  'cache/server.ts': 'cache',
  'mailer/server.ts': 'mailer',
  'purger/server.ts': 'purger',
  'scripts/migrate.ts': 'migrate',
  'scripts/start.ts': 'start'
}

export interface ProductionCommand { source: string, role: string }

/** The entry point a command line runs, or why it is not a plain `node dist/….js` of an existing source. */
export function productionCommand (command: unknown): ProductionCommand | string {
  if (!Array.isArray(command) || command.length !== 2 || command[0] !== 'node') return `not "node dist/<file>.js": ${JSON.stringify(command)}`
  const m = /^dist\/(.+)\.js$/.exec(String(command[1]))
  if (!m) return `not a file of dist/: ${command[1]}`
  const source = `${m[1]}.ts`
  if (!existsSync(path.join(ROOT, source))) return `${command[1]} has no source ${source}`
  const role = ENTRY_POINTS[source]
  if (!role) return `${source} is not an entry point of the tier`
  return { source, role }
}
