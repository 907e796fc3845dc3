// Package alertwebhook posts the auth packages' security events (locks,
// dead SMS codes, SMS bombing: auth.Event) to an HTTPS webhook, so that a
// person is told of a brute-force attempt as it happens (R-AUTH-3), not
// only when someone reads the log. It implements auth.Alerts; compose it
// with auth.LogAlerts (auth.MultiAlerts) so the log keeps every event too.
//
// Each event is POSTed as JSON:
//
//	{"kind":"account-locked","account":"ana.li","source":"198.51.100.7",
//	 "count":5,"until":"2026-12-07T05:30:00Z","time":"2026-12-07T05:15:00Z"}
//
// with Content-Type application/json. "until" is left out for events
// that are not locks, "account" for an address lock. An event holds who
// and from where, never a password, code or session id.
//
// # Delivery
//
// Alert never blocks the request that raised the event: it queues the
// event (Config.QueueSize, default 256) and returns. One sender goroutine
// posts queued events in order; an answer other than 2xx, or no answer
// within Config.Timeout, is retried Config.Retries times (default 3) with
// doubling backoff from Config.Backoff (default 500 ms). An event that
// finds the queue full, or fails every try, is dropped: counted (Stats)
// and logged at ERROR with its fields, so the log still holds it.
//
// # Limitations
//
// Events queued when the process stops are posted for at most
// Config.Timeout more (Close); there is no disk queue.
package alertwebhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/banking/auth"
)

// Config configures a Webhook.
type Config struct {
	// URL is the receiver: https:// only.
	URL string
	// RootCAs verifies the receiver's certificate; nil: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds each POST (default 5 s).
	Timeout time.Duration
	// QueueSize is how many events wait at most (default 256).
	QueueSize int
	// Retries after the first try (default 3; negative: none).
	Retries int
	// Backoff before the first retry, doubling after (default 500 ms).
	Backoff time.Duration
	Logger  *slog.Logger
}

// Stats counts what the webhook did.
type Stats struct {
	Sent    uint64 // events the receiver accepted (2xx)
	Retried uint64 // tries repeated
	Dropped uint64 // events lost: queue full or every try failed
}

// Webhook is an auth.Alerts that posts events to an HTTPS URL.
type Webhook struct {
	cfg                    Config
	client                 *http.Client
	queue                  chan auth.Event
	log                    *slog.Logger
	stop                   chan struct{}
	done                   chan struct{}
	once                   sync.Once
	sent, retried, dropped atomic.Uint64
}

var _ auth.Alerts = (*Webhook)(nil)

// New checks cfg and starts the sender.
func New(cfg Config) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, errors.New("alertwebhook: the URL must be https://host[:port]/path, without credentials")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		Proxy: http.ProxyFromEnvironment, MaxIdleConns: 2, IdleConnTimeout: time.Minute}
	w := &Webhook{cfg: cfg, client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		queue: make(chan auth.Event, cfg.QueueSize), log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// Alert queues ev and returns at once; a full queue drops it (counted,
// logged).
func (w *Webhook) Alert(ctx context.Context, ev auth.Event) {
	select {
	case <-w.stop:
		w.drop(ctx, ev, "the webhook is closed")
		return
	default:
	}
	select {
	case w.queue <- ev:
	default:
		w.drop(ctx, ev, "the queue is full")
	}
}

func (w *Webhook) drop(ctx context.Context, ev auth.Event, why string) {
	w.dropped.Add(1)
	w.log.ErrorContext(ctx, "security alert NOT delivered to the webhook: "+why, "kind", ev.Kind, "account", ev.Account,
		"source", ev.IP, "count", ev.Count, "at", ev.Time, "dropped_total", w.dropped.Load())
}

// Stats returns the counters.
func (w *Webhook) Stats() Stats {
	return Stats{Sent: w.sent.Load(), Retried: w.retried.Load(), Dropped: w.dropped.Load()}
}

// Close stops taking events and posts what is queued for at most one
// Timeout more; what is left is dropped.
func (w *Webhook) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

func (w *Webhook) run() {
	defer close(w.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		select {
		case ev := <-w.queue:
			w.deliver(ctx, ev)
		case <-w.stop:
			deadline := time.AfterFunc(w.cfg.Timeout, cancel)
			defer deadline.Stop()
			for {
				select {
				case ev := <-w.queue:
					w.deliver(ctx, ev)
				default:
					return
				}
			}
		}
	}
}

// deliver posts ev with retries.
func (w *Webhook) deliver(ctx context.Context, ev auth.Event) {
	body, err := json.Marshal(payload(ev))
	if err != nil {
		w.drop(ctx, ev, err.Error())
		return
	}
	wait := w.cfg.Backoff
	var last error
	for try := 0; try <= w.cfg.Retries; try++ {
		if try > 0 {
			w.retried.Add(1)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				w.drop(ctx, ev, fmt.Sprintf("shut down while retrying (%v)", last))
				return
			}
			wait *= 2
		}
		if last = w.post(ctx, body); last == nil {
			w.sent.Add(1)
			return
		}
		w.log.WarnContext(ctx, "security alert webhook failed; retrying", "kind", ev.Kind, "try", try+1, "err", last)
	}
	w.drop(ctx, ev, fmt.Sprintf("%d tries failed, the last: %v", w.cfg.Retries+1, last))
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

// Payload is the JSON posted for one event.
type Payload struct {
	Kind    string     `json:"kind"`
	Account string     `json:"account,omitempty"`
	Source  string     `json:"source,omitempty"`
	Count   int        `json:"count"`
	Until   *time.Time `json:"until,omitempty"`
	Time    time.Time  `json:"time"`
}

func payload(ev auth.Event) Payload {
	p := Payload{Kind: ev.Kind, Account: ev.Account, Source: ev.IP, Count: ev.Count, Time: ev.Time.UTC()}
	if !ev.Until.IsZero() {
		u := ev.Until.UTC()
		p.Until = &u
	}
	return p
}
