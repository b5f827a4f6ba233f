/**
 * Which invalidations a fetch follows (issue 11, finding 3). After this node
 * applied a purge it refetches the page from a frontend; if that frontend had
 * not yet applied the same bus event, it could answer from its render cache
 * with the page from before the write, and this node would keep it for
 * minutes — the purge undone. So every fetch for the store names the newest
 * bus event this node has applied; the frontend answers only once it has
 * applied that event too (or, when it cannot catch up in time, with an answer
 * no shared cache may keep).
 *
 * The field is ours alone: a client's copy is dropped before forwarding
 * (headers.ts UNTRUSTED_REQUEST), and frontends believe it only from their
 * trusted proxies, so nobody else can make a frontend wait or refuse to cache.
 */
import { BusPosition } from '../common/bus-position.js'

export const INVALIDATED_AFTER = 'x-invalidated-after'

/** This node's bus position: advanced after each applied event (app.ts). */
export function createBusPosition (): BusPosition { return new BusPosition() }

/** Sets the field on an upstream request for the store; nothing before the first event. */
export function markFetch (headers: Record<string, string>, position: BusPosition | undefined): void {
  const id = position?.current
  if (id !== undefined) headers[INVALIDATED_AFTER] = id
}
