package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyward/keyward/keysvc"
)

// Each token of a token set (keysvc.Stats.Tokens) in /readyz and /metrics
// (issue 15 item 3). Tokens are named by the operator's name for them
// (config tokens[].name), never by a key.

// tokenView is one token in /readyz's body.
type tokenView struct {
	Name         string    `json:"name"`
	Label        string    `json:"label"`
	Serial       string    `json:"serial"`
	State        string    `json:"state"` // up, down, catching-up
	Since        time.Time `json:"since"`
	Readmissions int       `json:"readmissions"`
}

func tokenViews(st keysvc.Stats) []tokenView {
	if len(st.Tokens) == 0 {
		return nil
	}
	out := make([]tokenView, 0, len(st.Tokens))
	for _, m := range st.Tokens {
		out = append(out, tokenView{Name: m.Name, Label: m.TokenLabel, Serial: m.Serial, State: m.State.String(), Since: m.Since.UTC(), Readmissions: m.Readmissions})
	}
	return out
}

// tokenSetCollector reads Backend.Stats at scrape time.
type tokenSetCollector struct {
	b                       Backend
	up, readmissions, since *prometheus.Desc
}

func newTokenSetCollector(b Backend) *tokenSetCollector {
	l := []string{"token"}
	return &tokenSetCollector{b: b,
		up:           prometheus.NewDesc("keyward_token_member_up", "1 while this token of the set serves, 0 while it is down or catching up.", l, nil),
		readmissions: prometheus.NewDesc("keyward_token_member_readmissions_total", "Times this token of the set was re-admitted after catch-up.", l, nil),
		since:        prometheus.NewDesc("keyward_token_member_state_seconds", "Seconds since this token of the set last changed state.", l, nil),
	}
}

func (c *tokenSetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.readmissions
	ch <- c.since
}

func (c *tokenSetCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, m := range c.b.Stats().Tokens {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, boolFloat(m.State.String() == "up"), m.Name)
		ch <- prometheus.MustNewConstMetric(c.readmissions, prometheus.CounterValue, float64(m.Readmissions), m.Name)
		ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, now.Sub(m.Since).Seconds(), m.Name)
	}
}
