package harness

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// bar is one bar of a chart.
type bar struct {
	Label string
	Value float64
	Text  string // shown after the bar; the value if empty
}

// barGroup is a labelled group of bars.
type barGroup struct {
	Label string
	Bars  []bar
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"}

// barChart draws a horizontal bar chart as a standalone SVG document.
// With logScale the axis is logarithmic (values ≤ 0 are drawn at the
// smallest positive value). ref, if positive, draws a dashed reference
// line at that value.
func barChart(title, unit string, logScale bool, ref float64, groups []barGroup) string {
	const (
		width   = 760
		left    = 220
		right   = 150
		barH    = 16
		gap     = 4
		groupGp = 14
		top     = 50
	)
	plotW := float64(width - left - right)
	maxV, minPos := 0.0, math.Inf(1)
	nBars := 0
	for _, g := range groups {
		for _, b := range g.Bars {
			maxV = math.Max(maxV, b.Value)
			if b.Value > 0 {
				minPos = math.Min(minPos, b.Value)
			}
			nBars++
		}
	}
	if ref > 0 {
		maxV = math.Max(maxV, ref)
	}
	if maxV <= 0 {
		maxV = 1
	}
	if math.IsInf(minPos, 1) {
		minPos = maxV / 10
	}
	lo, hi := 0.0, maxV*1.05
	if logScale {
		lo = math.Pow(10, math.Floor(math.Log10(minPos)))
		hi = math.Pow(10, math.Ceil(math.Log10(maxV*1.01)))
		if hi <= lo {
			hi = lo * 10
		}
	}
	x := func(v float64) float64 {
		if logScale {
			v = math.Max(v, lo)
			return left + plotW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
		}
		return left + plotW*v/hi
	}
	height := top + nBars*(barH+gap) + len(groups)*groupGp + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", 10, html.EscapeString(title))
	scale := "linear"
	if logScale {
		scale = "log scale"
	}
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">%s (%s)</text>`+"\n", 10, html.EscapeString(unit), scale)
	// Grid.
	var ticks []float64
	if logScale {
		for v := lo; v <= hi*1.0001; v *= 10 {
			ticks = append(ticks, v)
		}
	} else {
		step := niceStep(hi / 5)
		for v := 0.0; v <= hi; v += step {
			ticks = append(ticks, v)
		}
	}
	bottom := height - 30
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(t), top-6, x(t), bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", x(t), bottom+14, fmtNum(t))
	}
	y := top
	for _, g := range groups {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", 10, y+barH-3, html.EscapeString(g.Label))
		for i, br := range g.Bars {
			w := x(br.Value) - left
			if br.Value <= 0 && !logScale {
				w = 0
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y+barH-3, html.EscapeString(br.Label))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, math.Max(w, 1), barH, palette[i%len(palette)])
			txt := br.Text
			if txt == "" {
				txt = fmtNum(br.Value)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#000">%s</text>`+"\n", left+math.Max(w, 1)+4, y+barH-3, html.EscapeString(txt))
			y += barH + gap
		}
		y += groupGp
	}
	if ref > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-dasharray="4 3"/>`+"\n", x(ref), top-6, x(ref), bottom)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// fmtNum formats v with about three significant digits.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	default:
		return fmt.Sprintf("%.2g", v)
	}
}
