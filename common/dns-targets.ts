/**
 * Upstreams named by DNS (docker compose's `frontend`, a Kubernetes headless
 * service) resolve to one address per instance, and instances come and go
 * when the service is scaled. This keeps the expanded list current: each
 * configured URL becomes one origin per address, re-resolved every
 * `intervalMs`; literal addresses pass through unchanged. A failed lookup
 * keeps the last good answer (a DNS hiccup must not empty the pool).
 */
import { lookup as dnsLookup } from 'node:dns/promises'
import { isIP } from 'node:net'

export type Lookup = (hostname: string) => Promise<string[]>

const defaultLookup: Lookup = async (hostname) => (await dnsLookup(hostname, { all: true })).map((a) => a.address)

export interface DnsTargetsOptions {
  urls: string[]
  intervalMs?: number
  lookup?: Lookup
  onChange?: (origins: string[]) => void
}

function origin (url: URL, address?: string): string {
  const host = address === undefined ? url.host : `${isIP(address) === 6 ? `[${address}]` : address}${url.port ? `:${url.port}` : ''}`
  return `${url.protocol}//${host}`
}

export class DnsTargets {
  readonly #urls: URL[]
  readonly #lookup: Lookup
  readonly #intervalMs: number
  readonly #onChange?: (origins: string[]) => void
  readonly #last = new Map<string, string[]>()
  #origins: string[]
  #timer: NodeJS.Timeout | undefined

  constructor (options: DnsTargetsOptions) {
    this.#urls = options.urls.map((u) => new URL(u))
    this.#lookup = options.lookup ?? defaultLookup
    this.#intervalMs = options.intervalMs ?? 5000
    this.#onChange = options.onChange
    // Until the first lookup: the names as given (undici resolves them itself).
    this.#origins = this.#urls.map((u) => origin(u))
  }

  get origins (): string[] { return this.#origins }

  /** Resolves every name once; returns the current origins. */
  async refresh (): Promise<string[]> {
    const next: string[] = []
    for (const url of this.#urls) {
      const host = url.hostname.replace(/^\[|\]$/g, '')
      if (isIP(host) || host === 'localhost') { next.push(origin(url)); continue }
      let addresses = this.#last.get(host)
      try {
        addresses = [...new Set(await this.#lookup(host))].sort()
        this.#last.set(host, addresses)
      } catch { /* keep the last good answer */ }
      if (addresses?.length) for (const a of addresses) next.push(origin(url, a))
      else next.push(origin(url))
    }
    const unique = [...new Set(next)]
    if (unique.join(',') !== this.#origins.join(',')) {
      this.#origins = unique
      this.#onChange?.(unique)
    }
    return unique
  }

  start (): void {
    const tick = () => {
      this.refresh().catch(() => {}).finally(() => {
        this.#timer = setTimeout(tick, this.#intervalMs)
        this.#timer.unref()
      })
    }
    tick()
  }

  stop (): void { clearTimeout(this.#timer) }
}
