import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { barChart, escapeXml, niceScale } from '../../bench/lib/chart.ts'

/** The width attribute of the bar whose tooltip starts with `label`. */
function barWidth(svg: string, label: string): number {
  const re = new RegExp(`<rect [^>]*width="([0-9.]+)"[^>]*><title>${label.replace(/[()]/g, '\\$&')}:`)
  const m = re.exec(svg)
  assert.ok(m, `no bar for ${label}`)
  return Number(m[1])
}

describe('bench SVG bar chart', () => {
  it('draws bars proportional to their values, on a nice axis', () => {
    const svg = barChart({ title: 'CPU per request', unit: 'µs/request', bars: [{ label: 'nginx', value: 20 }, { label: 'gatehouse', value: 40, kind: 'gatehouse' }] })
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'))
    assert.ok(svg.trimEnd().endsWith('</svg>'))
    const a = barWidth(svg, 'nginx')
    const b = barWidth(svg, 'gatehouse')
    assert.ok(Math.abs(b / a - 2) < 0.01, `${b} / ${a}`)
    assert.match(svg, /fill="#2f6fdf"/) // gatehouse's colour is used
    assert.match(svg, />40\.0</)
  })

  it('escapes labels and titles', () => {
    const svg = barChart({ title: 'a <b> & "c"', unit: 'x', bars: [{ label: '<script>alert(1)</script>', value: 1 }] })
    assert.ok(!svg.includes('<script>'))
    assert.ok(svg.includes('&lt;script&gt;'))
    assert.ok(svg.includes('a &lt;b&gt; &amp; &quot;c&quot;'))
    assert.equal(escapeXml(`'`), '&apos;')
  })

  it('marks a candidate that was not measured instead of drawing a bar', () => {
    const svg = barChart({ title: 't', unit: 'u', bars: [{ label: 'ok', value: 3 }, { label: 'skipped', value: NaN }] })
    assert.match(svg, /not measured/)
    assert.equal((svg.match(/<title>skipped:/g) ?? []).length, 0)
  })

  it('draws a whisker for the range of the rounds', () => {
    const svg = barChart({ title: 't', unit: 'u', bars: [{ label: 'r', value: 10, min: 8, max: 14 }] })
    assert.equal((svg.match(/stroke="#1b1f24"/g) ?? []).length, 3)
  })

  it('chooses a covering axis with a 1/2/2.5/5 step', () => {
    assert.deepEqual(niceScale(42), { top: 50, step: 10 })
    assert.deepEqual(niceScale(118.2), { top: 125, step: 25 })
    assert.deepEqual(niceScale(0), { top: 1, step: 0.2 })
    const s = niceScale(0.37)
    assert.ok(s.top >= 0.37 && s.top <= 0.5)
  })
})

describe('bench SVG bar chart target line', () => {
  it('draws the goal as a dashed line inside the axis', () => {
    const svg = barChart({ title: 't', unit: 'MiB', bars: [{ label: 'a', value: 20 }], target: { value: 64, label: 'goal: 64 MiB' } })
    assert.match(svg, /stroke-dasharray/)
    assert.match(svg, /goal: 64 MiB/)
    assert.match(svg, />80</) // the axis grew to include the goal (64 → 80)
  })
})
