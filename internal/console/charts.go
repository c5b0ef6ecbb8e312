package console

import (
	"fmt"
	"html"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// The console's pictures are SVG drawn here, on the server, inline in the
// page: no charting service, no script. None relies on colour alone: each
// series has its own pattern or dash as well as its colour, the legend
// shows both, every mark carries a <title> with its exact figure, and the
// page shows the figures as a table too.

// series styles, in order: fill colour, pattern id, line dash.
var styles = []struct{ colour, pattern, dash, name string }{
	{"#b3261e", "solid", "", "solid"},
	{"#c77700", "hatch", "6 3", "hatched"},
	{"#1f5fa8", "dots", "2 3", "dotted"},
	{"#2e7d32", "cross", "10 3 2 3", "cross-hatched"},
}

const patternDefs = `<defs>
<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fbe3c2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c77700" stroke-width="3"/></pattern>
<pattern id="dots" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="#d6e4f5"/><circle cx="2.5" cy="2.5" r="1.5" fill="#1f5fa8"/></pattern>
<pattern id="cross" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#d7ecd8"/><path d="M0 0L6 6M6 0L0 6" stroke="#2e7d32" stroke-width="1.2"/></pattern>
</defs>`

func fill(i int) string {
	s := styles[i%len(styles)]
	if s.pattern == "solid" {
		return s.colour
	}
	return "url(#" + s.pattern + ")"
}

// legend draws the swatch and name of each series at y.
func legend(b *strings.Builder, names []string, x, y int) {
	for i, n := range names {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="14" height="14" fill="%s" stroke="#333" stroke-width="0.5"/>`, x, y-11, fill(i))
		fmt.Fprintf(b, `<text x="%d" y="%d">%s (%s)</text>`, x+18, y, esc(n), styles[i%len(styles)].name)
		x += 28 + 8*len(n) + 8*len(styles[i%len(styles)].name)
	}
}

func esc(s string) string { return html.EscapeString(s) }

// DayCounts is, for one day, the findings opened and resolved by severity.
type DayCounts struct {
	Day      time.Time
	Opened   map[string]uint64
	Resolved map[string]uint64
}

// severities, most severe first.
var severities = []string{"critical", "warning", "info"}

// dailyChart draws findings opened (above the axis) and resolved (below)
// per day, stacked by severity.
func dailyChart(days []DayCounts) template.HTML {
	const w, h, left, top, axisGap = 760, 260, 40, 30, 0
	var peak uint64 = 1
	for _, d := range days {
		var o, r uint64
		for _, s := range severities {
			o += d.Opened[s]
			r += d.Resolved[s]
		}
		peak = max(peak, o, r)
	}
	mid := top + (h-top-30)/2
	half := float64(mid-top-4) / float64(peak)
	bw := float64(w-left-10) / float64(max(len(days), 1))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="daily-title"><title id="daily-title">Findings opened (above the line) and resolved (below) per day, by severity, last %d days</title>`, w, h, len(days))
	b.WriteString(patternDefs)
	legend(&b, severities, left, 16)
	fmt.Fprintf(&b, `<text x="4" y="%d" class="axis">opened</text><text x="4" y="%d" class="axis">resolved</text>`, top+12, h-34)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, left, mid, w-10, mid)
	for i, d := range days {
		x := float64(left) + float64(i)*bw
		up, down := float64(mid), float64(mid)
		for si, s := range severities {
			if n := d.Opened[s]; n > 0 {
				hgt := float64(n) * half
				up -= hgt
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" stroke="#333" stroke-width="0.3"><title>%s: %d %s opened</title></rect>`,
					x+1, up, bw-2, hgt, fill(si), d.Day.Format("2006-01-02"), n, s)
			}
			if n := d.Resolved[s]; n > 0 {
				hgt := float64(n) * half
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" stroke="#333" stroke-width="0.3"><title>%s: %d %s resolved</title></rect>`,
					x+1, down, bw-2, hgt, fill(si), d.Day.Format("2006-01-02"), n, s)
				down += hgt
			}
		}
		if i%7 == 0 || i == len(days)-1 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="axis">%s</text>`, x, h-4, d.Day.Format("Jan 2"))
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%d</text>`, left-4, top+4, peak)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped text and numbers
}

// Stake is the money at stake of open findings of one code in one currency.
type Stake struct {
	Code     string
	Currency string
	Amount   decimal.Decimal
	Count    uint64
}

// stakeChart draws one bar per code and currency; bars compare only within
// a currency (each has its own scale), and each is labelled with its
// exact amount.
func stakeChart(stakes []Stake, decimals func(string) int32) template.HTML {
	if len(stakes) == 0 {
		return ""
	}
	peaks := map[string]decimal.Decimal{}
	var currencies []string
	for _, s := range stakes {
		if p, ok := peaks[s.Currency]; !ok || s.Amount.GreaterThan(p) {
			if !ok {
				currencies = append(currencies, s.Currency)
			}
			peaks[s.Currency] = s.Amount
		}
	}
	slices.Sort(currencies)
	const w, rowH, labelW = 760, 22, 330
	h := 10 + rowH*(len(stakes)+len(currencies))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="stake-title"><title id="stake-title">Money at stake in open findings, per code and currency</title>`, w, h)
	b.WriteString(patternDefs)
	y := 4
	for ci, cur := range currencies {
		fmt.Fprintf(&b, `<text x="0" y="%d" class="group">%s</text>`, y+15, esc(orNone(cur)))
		y += rowH
		for _, s := range stakes {
			if s.Currency != cur {
				continue
			}
			width := 0.0
			if p := peaks[cur]; p.IsPositive() {
				width, _ = s.Amount.Div(p).Mul(decimal.NewFromInt(w - labelW - 10)).Float64()
			}
			amount := s.Amount.StringFixed(decimals(cur))
			fmt.Fprintf(&b, `<text x="8" y="%d">%s (%d)</text>`, y+15, esc(s.Code), s.Count)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s" stroke="#333" stroke-width="0.3"><title>%s: %s %s in %d open findings</title></rect>`,
				labelW, y+3, max(width, 1), rowH-6, fill(ci), esc(s.Code), amount, esc(cur), s.Count)
			fmt.Fprintf(&b, `<text x="%d" y="%d" class="amount" text-anchor="end">%s %s</text>`, labelW-6, y+15, amount, esc(cur))
			y += rowH
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped text and numbers
}

func orNone(s string) string {
	if s == "" {
		return "(no currency)"
	}
	return s
}

// AmountPoint is a payment's running totals after one delivery.
type AmountPoint struct {
	At                               time.Time
	Paid, Captured, Refunded, Voided decimal.Decimal
}

// amountsChart draws a payment's paid, captured, refunded and voided
// totals over time as step lines, each with its own dash and marker.
func amountsChart(points []AmountPoint, currency string) template.HTML {
	if len(points) == 0 {
		return ""
	}
	const w, h, left, right, top, bottom = 760, 220, 60, 150, 28, 24
	names := []string{"paid", "captured", "refunded", "voided"}
	value := func(p AmountPoint, i int) decimal.Decimal {
		return [...]decimal.Decimal{p.Paid, p.Captured, p.Refunded, p.Voided}[i]
	}
	peak := decimal.NewFromInt(1)
	for _, p := range points {
		for i := range names {
			if v := value(p, i); v.GreaterThan(peak) {
				peak = v
			}
		}
	}
	t0, t1 := points[0].At, points[len(points)-1].At
	span := t1.Sub(t0)
	xOf := func(t time.Time) float64 {
		if span <= 0 {
			return left
		}
		return left + float64(t.Sub(t0))/float64(span)*float64(w-left-right)
	}
	yOf := func(v decimal.Decimal) float64 {
		f, _ := v.Div(peak).Float64()
		return float64(h-bottom) - f*float64(h-bottom-top)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="amounts-title"><title id="amounts-title">This payment's amounts over time: paid, captured, refunded, voided (%s)</title>`, w, h, esc(currency))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`, left-4, top+4, peak.String())
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">0</text>`, left-4, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis">%s</text>`, left, h-6, t0.Format("2006-01-02 15:04"))
	if span > 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`, w-right, h-6, t1.Format("2006-01-02 15:04"))
	}
	markers := []string{"circle", "square", "diamond", "triangle"}
	for i, name := range names {
		s := styles[i]
		var path strings.Builder
		var prevY float64
		for j, p := range points {
			x, y := xOf(p.At), yOf(value(p, i))
			if j == 0 {
				fmt.Fprintf(&path, "M%.1f %.1f", x, y)
			} else {
				fmt.Fprintf(&path, " L%.1f %.1f L%.1f %.1f", x, prevY, x, y)
			}
			prevY = y
		}
		fmt.Fprintf(&path, " L%d %.1f", w-right, prevY)
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`, path.String(), s.colour, dash)
		last := value(points[len(points)-1], i).String()
		b.WriteString(marker(markers[i], float64(w-right), yOf(value(points[len(points)-1], i)), s.colour, name, last))
		// The legend, in the right margin: marker, dash and name with the
		// final figure.
		ly := float64(top + i*22)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="2"%s/>`, w-right+8, ly, w-right+30, ly, s.colour, dash)
		b.WriteString(marker(markers[i], float64(w-right+19), ly, s.colour, name, last))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f">%s %s</text>`, w-right+36, ly+4, name, esc(last))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped text and numbers
}

func marker(kind string, x, y float64, colour, name, v string) string {
	title := fmt.Sprintf("<title>%s %s</title>", esc(name), esc(v))
	switch kind {
	case "square":
		return fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="8" height="8" fill="%s">%s</rect>`, x-4, y-4, colour, title)
	case "diamond":
		return fmt.Sprintf(`<path d="M%.1f %.1f l5 5 l-5 5 l-5 -5z" fill="%s">%s</path>`, x, y-5, colour, title)
	case "triangle":
		return fmt.Sprintf(`<path d="M%.1f %.1f l5 9 l-10 0z" fill="%s">%s</path>`, x, y-5, colour, title)
	}
	return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s">%s</circle>`, x, y, colour, title)
}
