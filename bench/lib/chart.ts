/**
 * SVG bar charts of the benchmark's results: people compare proxies by looking. One horizontal
 * bar per candidate (labels are long: "gatehouse OIDC JWT (cache warm)"), the value written at
 * the end of each bar, optional whiskers for the range of the rounds, and gatehouse's bars in
 * one colour against the peers in another. Plain SVG 1.1, no script, no external font or
 * stylesheet, so it renders the same on GitHub, in a browser and in an image viewer.
 */

/** One bar. */
export interface Bar {
  label: string
  /** The bar's length (median); NaN or negative values are drawn as "not measured". */
  value: number
  /** The range of the rounds, drawn as a whisker when given. */
  min?: number
  max?: number
  /** Colour group: gatehouse's own bars stand out from the peers'. */
  kind?: 'gatehouse' | 'peer' | 'baseline'
}

export interface ChartOptions {
  title: string
  /** The unit after each value and on the axis, e.g. "µs/request". */
  unit: string
  bars: Bar[]
  /** Optional note under the title (the run, the machine). */
  subtitle?: string
  /** Digits after the decimal point of the value labels (default 1). */
  digits?: number
  width?: number
  /** A dashed vertical line at a goal, e.g. the issue's 64 MiB per worker. */
  target?: { value: number; label: string }
}

const COLOURS: Record<NonNullable<Bar['kind']>, string> = { gatehouse: '#2f6fdf', peer: '#8a8f98', baseline: '#c8a24a' }

/** XML text escaping: labels come from candidate names and may carry `<`, `&` or quotes. */
export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string)
}

/** A "nice" axis maximum and tick step (1, 2, 2.5 or 5 × 10^k) covering `max`. */
export function niceScale(max: number, ticks = 5): { top: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { top: 1, step: 0.2 }
  const rough = max / ticks
  const mag = 10 ** Math.floor(Math.log10(rough))
  const step = ([1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rough) ?? 10 * mag) as number
  return { top: Math.ceil(max / step) * step, step }
}

/** Render the chart as an SVG document. */
export function barChart(o: ChartOptions): string {
  const width = o.width ?? 860
  const digits = o.digits ?? 1
  const rowH = 26
  const labelW = Math.min(380, Math.max(160, 7 * Math.max(0, ...o.bars.map((b) => b.label.length))))
  const left = labelW + 16
  const right = 90
  const top = o.subtitle === undefined ? 44 : 62
  const plotW = width - left - right
  const height = top + o.bars.length * rowH + 40
  const finite = [...o.bars.flatMap((b) => [b.value, b.max ?? b.value]), o.target?.value ?? 0].filter((v) => Number.isFinite(v) && v >= 0)
  const { top: axisMax, step } = niceScale(Math.max(0, ...finite))
  const x = (v: number): number => left + (Math.max(0, Math.min(v, axisMax)) / axisMax) * plotW
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`)
  out.push(`<title>${escapeXml(o.title)}</title>`)
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(`<text x="12" y="22" font-size="15" font-weight="bold" fill="#1b1f24">${escapeXml(o.title)}</text>`)
  if (o.subtitle !== undefined) out.push(`<text x="12" y="42" fill="#57606a">${escapeXml(o.subtitle)}</text>`)
  // Grid and axis labels.
  const bottom = top + o.bars.length * rowH
  for (let v = 0; v <= axisMax + step / 2; v += step) {
    const gx = x(v).toFixed(1)
    out.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${bottom}" stroke="#e6e8eb"/>`)
    out.push(`<text x="${gx}" y="${bottom + 16}" text-anchor="middle" fill="#57606a">${formatTick(v, step)}</text>`)
  }
  out.push(`<text x="${(left + plotW / 2).toFixed(1)}" y="${bottom + 34}" text-anchor="middle" fill="#57606a">${escapeXml(o.unit)}</text>`)
  o.bars.forEach((b, i) => {
    const y = top + i * rowH
    const cy = y + rowH / 2
    out.push(`<text x="${left - 8}" y="${(cy + 4).toFixed(1)}" text-anchor="end" fill="#1b1f24">${escapeXml(b.label)}</text>`)
    if (!Number.isFinite(b.value) || b.value < 0) {
      out.push(`<text x="${left + 4}" y="${(cy + 4).toFixed(1)}" fill="#8a8f98">not measured</text>`)
      return
    }
    const w = Math.max(1, x(b.value) - left)
    out.push(`<rect x="${left}" y="${y + 5}" width="${w.toFixed(1)}" height="${rowH - 10}" fill="${COLOURS[b.kind ?? 'peer']}"><title>${escapeXml(`${b.label}: ${b.value.toFixed(digits)} ${o.unit}`)}</title></rect>`)
    let end = x(b.value)
    if (b.min !== undefined && b.max !== undefined && Number.isFinite(b.min) && Number.isFinite(b.max) && b.max > b.min) {
      const x1 = x(b.min).toFixed(1)
      const x2 = x(b.max).toFixed(1)
      out.push(`<line x1="${x1}" y1="${cy}" x2="${x2}" y2="${cy}" stroke="#1b1f24" stroke-width="1"/>`)
      out.push(`<line x1="${x1}" y1="${cy - 4}" x2="${x1}" y2="${cy + 4}" stroke="#1b1f24"/><line x1="${x2}" y1="${cy - 4}" x2="${x2}" y2="${cy + 4}" stroke="#1b1f24"/>`)
      end = Math.max(end, x(b.max))
    }
    out.push(`<text x="${(end + 6).toFixed(1)}" y="${(cy + 4).toFixed(1)}" fill="#1b1f24">${b.value.toFixed(digits)}</text>`)
  })
  if (o.target !== undefined && Number.isFinite(o.target.value)) {
    const tx = x(o.target.value).toFixed(1)
    out.push(`<line x1="${tx}" y1="${top - 8}" x2="${tx}" y2="${bottom}" stroke="#cf222e" stroke-width="1.5" stroke-dasharray="5,4"/>`)
    out.push(`<text x="${tx}" y="${top - 11}" text-anchor="middle" fill="#cf222e">${escapeXml(o.target.label)}</text>`)
  }
  // Legend: only the kinds present.
  const kinds = [...new Set(o.bars.map((b) => b.kind ?? 'peer'))]
  let lx = width - 12
  for (const k of kinds.reverse()) {
    const label = k === 'gatehouse' ? 'gatehouse' : k === 'baseline' ? 'baseline' : 'peer'
    lx -= 8 * label.length + 22
    out.push(`<rect x="${lx}" y="12" width="12" height="12" fill="${COLOURS[k]}"/><text x="${lx + 16}" y="22" fill="#1b1f24">${label}</text>`)
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

function formatTick(v: number, step: number): string {
  const d = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)))
  return v.toFixed(d)
}
