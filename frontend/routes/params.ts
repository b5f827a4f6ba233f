/** Query parameters of the list pages: parsed strictly, so one page has one render-cache key. */
import { Errors } from '../../common/errors.js'

export type Query = Record<string, string | string[] | undefined>

function one (query: Query, name: string): string | undefined {
  const v = query[name]
  if (Array.isArray(v)) throw new Errors.VALIDATION(`${name} may appear only once`)
  return v === '' ? undefined : v
}

export function pageParam (query: Query): number {
  const v = one(query, 'page')
  if (v === undefined) return 1
  if (!/^\d{1,6}$/.test(v) || Number(v) < 1) throw new Errors.VALIDATION('page must be a whole number from 1')
  return Number(v)
}

export function intParam (query: Query, name: string, allowed: readonly number[]): number | undefined {
  const v = one(query, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!/^\d{1,3}$/.test(v) || !allowed.includes(n)) throw new Errors.VALIDATION(`${name} must be one of ${allowed.join(', ')}`)
  return n
}

export function enumParam<T extends string> (query: Query, name: string, allowed: readonly T[]): T | undefined {
  const v = one(query, name)
  if (v === undefined) return undefined
  if (!(allowed as readonly string[]).includes(v)) throw new Errors.VALIDATION(`${name} must be one of ${allowed.join(', ')}`)
  return v as T
}

export function stringParam (query: Query, name: string): string | undefined {
  return one(query, name)
}

/** Slugs are lowercase words and dashes; anything else cannot exist, so it is a 404 without a query. */
export const SLUG = /^[a-z0-9][a-z0-9-]{0,199}$/
