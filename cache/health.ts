/**
 * The cache's own GET /-/health: 200 while an upstream is healthy or
 * something is stored, 503 otherwise. Anyone sees counts only; the
 * upstreams' addresses and states map the network behind the cache, so they
 * are for the admin token (Authorization: Bearer $ADMIN_TOKEN). A wrong
 * token is a 403, never the public answer.
 */
import type { Engine } from './engine.js'
import { authorize } from './auth.js'

export interface HealthAnswer { status: number, body: string, type: string }

export function healthAnswer (e: Engine, authorization: string | undefined): HealthAnswer {
  const auth = authorize(authorization, e.config.ADMIN_TOKEN)
  if (auth === 'wrong') return { status: 403, body: 'these credentials may not do this\n', type: 'text/plain; charset=utf-8' }
  const counts = e.director.counts()
  const ready = counts.healthy > 0 || e.store.count > 0
  const now = e.clock.now()
  const upstreams = auth === 'ok'
    ? { ...counts, list: e.director.upstreams.map((u) => ({ url: u.url, healthy: e.director.isUp(u, now), probe: u.probeMode, probeHealthy: u.probeHealthy, ejected: u.ejectedUntil > now, inflight: u.inflight })) }
    : counts
  const body = JSON.stringify({ status: ready ? 'ok' : 'unavailable', objects: e.store.count, bytes: e.store.bytes, upstreams }) + '\n'
  return { status: ready ? 200 : 503, body, type: 'application/json' }
}
