package ops

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is mailbot's Prometheus registry: counters fed by the engine's
// observer and the outbox's hooks, and gauges read from a status source
// at scrape time. It has its own registry (with the Go and process
// collectors), never the global one.
type Metrics struct {
	reg          *prometheus.Registry
	runs         *prometheus.CounterVec
	runDuration  *prometheus.HistogramVec
	deliveries   *prometheus.CounterVec
	sessions     *prometheus.CounterVec
	filesHandled *prometheus.CounterVec
}

// NewMetrics returns the metrics; status, when set, is read at each
// scrape for the gauges (scripts loaded, load errors, next runs, outbox
// messages).
func NewMetrics(status func(ctx context.Context) (Status, error)) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbot_script_runs_total",
			Help: "Handler runs by script, trigger id and outcome (ok, error, timeout, memory).",
		}, []string{"script", "trigger", "outcome"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailbot_script_run_duration_seconds",
			Help:    "Duration of handler runs.",
			Buckets: []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"script", "trigger"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbot_outbox_deliveries_total",
			Help: "Outbox delivery attempts by account and result (sent, temporary, permanent).",
		}, []string{"account", "result"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbot_smtp_sessions_total",
			Help: "SMTP sessions the outbox opened, by account and outcome (ok, error).",
		}, []string{"account", "outcome"}),
		filesHandled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbot_files_handled_total",
			Help: "Dropped files handled by file triggers, by script and outcome (done, failed, retry).",
		}, []string{"script", "outcome"}),
	}
	m.reg.MustRegister(m.runs, m.runDuration, m.deliveries, m.sessions, m.filesHandled,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if status != nil {
		m.reg.MustRegister(&statusCollector{status: status})
	}
	return m
}

// Registry returns the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RunFinished counts a handler run.
func (m *Metrics) RunFinished(script, trigger, outcome string, d time.Duration) {
	m.runs.WithLabelValues(script, trigger, outcome).Inc()
	m.runDuration.WithLabelValues(script, trigger).Observe(d.Seconds())
}

// FileHandled counts a dropped file's outcome.
func (m *Metrics) FileHandled(script, outcome string) {
	m.filesHandled.WithLabelValues(script, outcome).Inc()
}

// Delivery counts an outbox delivery attempt; result is sent, temporary
// or permanent.
func (m *Metrics) Delivery(account, result string) {
	m.deliveries.WithLabelValues(account, result).Inc()
}

// Session counts an SMTP session the outbox opened; outcome is ok or
// error.
func (m *Metrics) Session(account, outcome string) {
	m.sessions.WithLabelValues(account, outcome).Inc()
}

var (
	descLoaded = prometheus.NewDesc("mailbot_scripts_loaded",
		"Scripts running now.", nil, nil)
	descLoadErrors = prometheus.NewDesc("mailbot_script_load_errors",
		"Scripts whose last load failed (a previous version may still run).", nil, nil)
	descNextRun = prometheus.NewDesc("mailbot_trigger_next_run_timestamp_seconds",
		"Next scheduled run of every and cron triggers, as a Unix time.", []string{"script", "trigger"}, nil)
	descOutbox = prometheus.NewDesc("mailbot_outbox_messages",
		"Messages in the outbox by state (queued, dead, corrupt).", []string{"state"}, nil)
)

// statusCollector reads the gauges from a status snapshot at scrape time.
type statusCollector struct {
	status func(ctx context.Context) (Status, error)
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLoaded
	ch <- descLoadErrors
	ch <- descNextRun
	ch <- descOutbox
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descOutbox, err)
		return
	}
	loaded, failed := 0, 0
	for _, s := range st.Scripts {
		if s.Hash != "" {
			loaded++
		}
		if s.LoadError != "" {
			failed++
		}
	}
	ch <- prometheus.MustNewConstMetric(descLoaded, prometheus.GaugeValue, float64(loaded))
	ch <- prometheus.MustNewConstMetric(descLoadErrors, prometheus.GaugeValue, float64(failed))
	for _, t := range st.Triggers {
		if t.NextRun != nil {
			ch <- prometheus.MustNewConstMetric(descNextRun, prometheus.GaugeValue, float64(t.NextRun.UnixNano())/1e9, t.Script, t.ID)
		}
	}
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(st.Outbox.Queued), "queued")
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(st.Outbox.Dead), "dead")
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(st.Outbox.Corrupt), "corrupt")
}

// Recent keeps the latest deliveries, newest first, for Status.Recent.
type Recent struct {
	mu   sync.Mutex
	ring []Delivery
	next int
	full bool
}

// NewRecent returns a buffer of the last n deliveries.
func NewRecent(n int) *Recent { return &Recent{ring: make([]Delivery, n)} }

// Add records a delivery.
func (r *Recent) Add(d Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = d
	r.next = (r.next + 1) % len(r.ring)
	if r.next == 0 {
		r.full = true
	}
}

// List returns the deliveries, newest first.
func (r *Recent) List() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	out := make([]Delivery, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.ring[(r.next-i+len(r.ring))%len(r.ring)])
	}
	return out
}
