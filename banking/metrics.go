package banking

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyward/keyward/banking/auth"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/banking/store"
)

// Banking's Prometheus metrics (R-AV-2, issue 18 item 4). They are served
// by OpsHandler on a listener of its own (cmd/banking's metrics.listen),
// never on the API's.
//
// Every label value comes from a small fixed set: route templates
// (/v1/receipts/:id, never the path a client sent), HTTP methods and
// status codes, the codes of banking's error table, keysvc's operation
// names and error codes, transfer and posting kinds. No label ever holds
// a customer id, login, account number, address, key name or request id:
// who did what is banking's audit trail's business, which needs the
// trail's trust, not a scrape. TestMetricsNameNoCustomer greps a scrape
// for every identifier its customers have.
//
// Where each count is taken:
//
//	keyward_bank_http_*                   the API's middleware (metrics.middleware), every route
//	keyward_bank_logins_total             Bank.Login, its outcome
//	keyward_bank_login_locks_total        the brute-force guard's lock alerts (Config.Alerts, wrapped)
//	keyward_bank_otp_sends_total          the SMS gateway (Config.SMS, wrapped): every code sent
//	keyward_bank_otp_failures_total       the middleware: every answer with an otp_* refusal code
//	keyward_bank_transfers_total          TransferUSB, TransferCloud/PollCloud, AuthoriseCorpOrder (a replayed order is not counted again)
//	keyward_bank_keysvc_*                 the KMS decorator (instrumentedKMS) New puts around Config.KMS
//	keyward_bank_ledger_commit_seconds    the ledger's OnPost hook: each posting's store transaction
//	keyward_bank_store_faults_total       store.ErrBackend seen by a request, the sweeper or /readyz
type metrics struct {
	requests    *prometheus.CounterVec   // route, method, code
	latency     *prometheus.HistogramVec // route
	logins      *prometheus.CounterVec   // result
	locks       *prometheus.CounterVec   // scope
	otpSends    *prometheus.CounterVec   // result
	otpFailures *prometheus.CounterVec   // reason
	transfers   *prometheus.CounterVec   // kind, result
	kmsLatency  *prometheus.HistogramVec // op
	kmsErrors   *prometheus.CounterVec   // op, code
	ledger      *prometheus.HistogramVec // kind
	storeFaults *prometheus.CounterVec   // where
}

// Transfer kinds, the kind label of keyward_bank_transfers_total.
const (
	transferUSB       = "usb"
	transferCloud     = "cloud"
	transferCorporate = "corporate"
)

// newMetrics registers banking's collectors on reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	// 1 ms (a cached public key) to 5 s (a login behind a slow keysvc);
	// slower requests are counted in +Inf.
	httpBuckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_http_requests_total",
			Help: "API requests by route template, method and HTTP status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyward_bank_http_request_duration_seconds",
			Help:    "API request latency by route template, from the edge's admission to the answer.",
			Buckets: httpBuckets,
		}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_logins_total",
			Help: "Login attempts by result: \"ok\" or the error code answered (login_failed, temporarily_locked, ...).",
		}, []string{"result"}),
		locks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_login_locks_total",
			Help: "Login locks set by the brute-force guard (R-AUTH-3), by scope: account or address.",
		}, []string{"scope"}),
		otpSends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_otp_sends_total",
			Help: "SMS codes handed to the SMS gateway, by result: ok or failed.",
		}, []string{"result"}),
		otpFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_otp_failures_total",
			Help: "Requests refused over an SMS code, by reason (the error code: otp_invalid, otp_expired, otp_locked, ...).",
		}, []string{"reason"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_transfers_total",
			Help: "Transfers by kind (usb, cloud, corporate) and result: \"ok\" or the error code answered.",
		}, []string{"kind", "result"}),
		kmsLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyward_bank_keysvc_call_duration_seconds",
			Help: "Latency of banking's calls to keysvc, by operation (confirmation includes its long-poll wait).",
			// 0.5 ms (a MAC on a warm connection) to 10 s.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
		kmsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_keysvc_errors_total",
			Help: "Failed keysvc calls by operation and code (keysvc's error code, unreachable, timeout, canceled or other).",
		}, []string{"op", "code"}),
		ledger: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyward_bank_ledger_commit_seconds",
			Help: "Ledger posting commit latency by posting kind: one posting's store transaction, its group-commit wait included.",
			// 0.5 ms to 5 s: a batch waits 2 ms for company by default.
			Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2.5, 5},
		}, []string{"kind"}),
		storeFaults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyward_bank_store_faults_total",
			Help: "Faults of the database (store.ErrBackend) seen, by where: request, sweep or readyz.",
		}, []string{"where"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.logins, m.locks, m.otpSends, m.otpFailures,
		m.transfers, m.kmsLatency, m.kmsErrors, m.ledger, m.storeFaults} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The series an operator alerts on exist from the start (at zero), so
	// a rate() over them is defined before the first event.
	m.storeFaults.WithLabelValues("request")
	m.locks.WithLabelValues("account")
	m.locks.WithLabelValues("address")
	return m, nil
}

// privateRegistry is the registry of a Bank whose Config.Registry is nil:
// banking's metrics and the Go runtime and process collectors.
func privateRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// scrapeHandler serves reg's exposition.
func scrapeHandler(reg prometheus.Gatherer, log promhttp.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: log})
}

// resultOf is the result label of an outcome: "ok", or the stable code a
// client is answered (banking's error table; "internal" for the rest).
func resultOf(err error) string {
	if err == nil {
		return "ok"
	}
	_, code, _, _ := classify(err)
	return code
}

// transfer counts one transfer's outcome.
func (m *metrics) transfer(kind string, err error) {
	m.transfers.WithLabelValues(kind, resultOf(err)).Inc()
}

// knownMethods are the method label's values; any other method is OTHER.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"PATCH": true, "OPTIONS": true, "CONNECT": true, "TRACE": true}

// middleware returns app's request counter: every request by route
// template, method and status, and its latency. It hands an error to the
// app's error handler itself (as fiber's logger middleware does), so the
// status it counts is the one answered; a panic is counted as 500 and
// goes on to the edge's recovery.
func (m *metrics) middleware(app *fiber.App) fiber.Handler {
	if m == nil { // a Bank not made by New (a test's bare &Bank{}) counts nothing
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	rl := &routeLabels{app: app}
	return func(c *fiber.Ctx) (err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				m.request(c, rl, http.StatusInternalServerError, start)
				panic(r)
			}
		}()
		err = c.Next()
		if err != nil {
			m.classified(err)
			if herr := c.App().ErrorHandler(c, err); herr != nil {
				_ = c.SendStatus(http.StatusInternalServerError)
			}
			err = nil
		}
		m.request(c, rl, c.Response().StatusCode(), start)
		return err
	}
}

// classified counts what an error answer says about the domain: SMS-code
// refusals, whichever route checked the code, and store faults.
func (m *metrics) classified(err error) {
	if errors.Is(err, store.ErrBackend) {
		m.storeFaults.WithLabelValues("request").Inc()
	}
	if _, code, _, _ := classify(err); strings.HasPrefix(code, "otp_") && code != "otp_rate_limited" {
		m.otpFailures.WithLabelValues(code).Inc()
	}
}

func (m *metrics) request(c *fiber.Ctx, rl *routeLabels, status int, start time.Time) {
	route := rl.of(c, status)
	method := c.Method()
	if !knownMethods[method] {
		method = "OTHER"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// routeLabels names the route that answered a request: its template
// (/v1/receipts/:id), never the path the client sent.
type routeLabels struct {
	app    *fiber.App
	once   sync.Once
	routes map[string]bool // "METHOD template" of every handler route
}

// of is the route label of c's answer. A request no route took ends on a
// middleware's route (fiber's Use, whose Route names the middleware's
// prefix): a 404 or 405 is then "unmatched", anything else (a group's
// rate limiter refusing) the middleware's prefix.
func (rl *routeLabels) of(c *fiber.Ctx, status int) string {
	rl.once.Do(func() { // at the first request every route is registered
		rl.routes = map[string]bool{}
		for _, r := range rl.app.GetRoutes(true) {
			rl.routes[r.Method+" "+r.Path] = true
		}
	})
	r := c.Route()
	if !rl.routes[r.Method+" "+r.Path] && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		return "unmatched"
	}
	if r.Path == "" {
		return "/"
	}
	return r.Path
}

// countingAlerts counts the brute-force guard's locks, then passes every
// event on.
type countingAlerts struct {
	next auth.Alerts
	m    *metrics
}

func (a countingAlerts) Alert(ctx context.Context, ev auth.Event) {
	switch ev.Kind {
	case auth.KindAccountLocked:
		a.m.locks.WithLabelValues("account").Inc()
	case auth.KindIPLocked:
		a.m.locks.WithLabelValues("address").Inc()
	}
	a.next.Alert(ctx, ev)
}

// gateway wraps an SMS gateway to count the codes sent, keeping its
// optional Keeper ability (the dev outbox).
func (m *metrics) gateway(g otp.Gateway) otp.Gateway {
	if k, ok := g.(otp.Keeper); ok {
		return countingKeeper{countingGateway{k, m}, k}
	}
	return countingGateway{g, m}
}

type countingGateway struct {
	next otp.Gateway
	m    *metrics
}

func (g countingGateway) Send(ctx context.Context, phone, text string) error {
	return g.count(g.next.Send(ctx, phone, text))
}

func (g countingGateway) count(err error) error {
	if err != nil {
		g.m.otpSends.WithLabelValues("failed").Inc()
	} else {
		g.m.otpSends.WithLabelValues("ok").Inc()
	}
	return err
}

type countingKeeper struct {
	countingGateway
	k otp.Keeper
}

var _ otp.Keeper = countingKeeper{}

func (g countingKeeper) SendUntil(ctx context.Context, phone, text string, expires time.Time) error {
	return g.count(g.k.SendUntil(ctx, phone, text, expires))
}

func (g countingKeeper) Spent(phone, code string) error { return g.k.Spent(phone, code) }
func (g countingKeeper) Expire(now time.Time) error     { return g.k.Expire(now) }

// ledgerPost is the ledger's OnPost hook: commit latency by kind.
func (m *metrics) ledgerPost(kind ledger.Kind, took time.Duration, _ error) {
	m.ledger.WithLabelValues(kind.String()).Observe(took.Seconds())
}
