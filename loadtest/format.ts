// Number formatting shared by the text table, the progress line and the HTML report.

export function fmtMs (v: number | null | undefined): string {
  if (v === null || v === undefined) return '–'
  if (v >= 1000) return (v / 1000).toFixed(2) + 's'
  if (v >= 100) return v.toFixed(0)
  if (v >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

export function fmtPct (v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined) return '–'
  return (v * 100).toFixed(digits) + '%'
}

export function fmtInt (v: number): string {
  return Math.round(v).toLocaleString('en-US')
}

export function fmtRps (v: number): string {
  return v >= 100 ? fmtInt(v) : v.toFixed(1)
}

export function fmtBytes (v: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let i = 0
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++ }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

export function fmtSeconds (v: number): string {
  return v.toFixed(1) + 's'
}

/** Plain-text table: the first row is the header; `align` per column (l or r). */
export function textTable (rows: string[][], align: Array<'l' | 'r'>, indent = ''): string {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, [...c].length) })
  const line = (r: string[]): string => indent + r.map((c, i) => {
    const pad = ' '.repeat(widths[i] - [...c].length)
    return (align[i] ?? 'l') === 'r' ? pad + c : c + pad
  }).join('  ').trimEnd()
  const [head, ...body] = rows
  const rule = indent + widths.map(w => '─'.repeat(w)).join('  ')
  return [line(head), rule, ...body.map(line)].join('\n')
}

/** "20" or "1→20": the first and last step's target of a stage. */
export function targetRange (st: { steps: Array<{ connections: number, rate: number | null }> }, model: 'open' | 'closed'): string {
  const v = (x: { connections: number, rate: number | null }): number => (model === 'open' ? x.rate ?? 0 : x.connections)
  if (st.steps.length === 0) return '–'
  const a = v(st.steps[0])
  const b = v(st.steps[st.steps.length - 1])
  return a === b ? fmtInt(a) : `${fmtInt(a)}→${fmtInt(b)}`
}
