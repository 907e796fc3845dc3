package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDownTime is how long an endpoint that failed is passed over
// before it is tried again (WithDownTime).
const DefaultDownTime = 2 * time.Second

// Balance is how a client with several endpoints chooses one per request.
type Balance int

const (
	// Spread sends each request to the next healthy endpoint in turn
	// (round robin), the default.
	Spread Balance = iota + 1
	// Sticky sends every request to the first healthy endpoint in the
	// order given, and goes back to an earlier one as soon as its down
	// time has passed: a primary with standbys.
	Sticky
)

func (b Balance) String() string {
	switch b {
	case Spread:
		return "spread"
	case Sticky:
		return "sticky"
	}
	return fmt.Sprintf("Balance(%d)", int(b))
}

// WithBalance sets how requests are spread over the endpoints (default
// Spread; see "Endpoints and failover").
func WithBalance(b Balance) Option { return func(c *Client) { c.balance = b } }

// WithDownTime sets how long an endpoint that failed is passed over
// (default DefaultDownTime; at least 1 ms).
func WithDownTime(d time.Duration) Option { return func(c *Client) { c.downTime = d } }

// WithEndpointEvents calls f when an endpoint that answered fails (up
// false, with the failure) and when one that had failed answers again (up
// true, err nil): once per change, not per request, so a caller may log
// each call (cmd/banking does). f runs on the request's goroutine and must
// return quickly. err never holds a request header, so never a bearer
// token.
func WithEndpointEvents(f func(url string, up bool, err error)) Option {
	return func(c *Client) { c.onChange = f }
}

// endpoint is one keysvc node and what the client knows of its health.
type endpoint struct {
	base      string       // scheme://host[:port][/prefix], no trailing slash
	downUntil atomic.Int64 // unix nanoseconds; passed over until then
	failing   atomic.Bool  // its last attempt failed (WithEndpointEvents)

	mu       sync.Mutex
	failures uint64
	last     string // the last failure, for Endpoints
}

// markDown passes e over for d after the failure err.
func (e *endpoint) markDown(d time.Duration, err error) {
	e.downUntil.Store(time.Now().Add(d).UnixNano())
	e.mu.Lock()
	e.failures++
	e.last = failureText(err)
	e.mu.Unlock()
}

// failureText is what Endpoints shows of a failure: the status and code
// of an answer, or the transport error (which names the URL and the
// network error, never a header, so never a bearer token).
func failureText(err error) string {
	var ce *Error
	if errors.As(err, &ce) {
		if ce.Code == "" {
			return fmt.Sprintf("HTTP %d", ce.Status)
		}
		return fmt.Sprintf("HTTP %d %s", ce.Status, ce.Code)
	}
	return err.Error()
}

// parseEndpoint checks one base URL; i names it in errors (the URL
// itself is not repeated: it might hold credentials).
func parseEndpoint(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("keysvc client: %s must be http(s)://host[:port]", name)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.ForceQuery {
		return "", fmt.Errorf("keysvc client: %s must not hold credentials, a query or a fragment", name)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// EndpointState is what the client knows of one endpoint now.
type EndpointState struct {
	URL         string
	Down        bool      // passed over until DownUntil
	DownUntil   time.Time // zero when never down
	Failures    uint64    // failures (connection, 502, 503, 504) so far
	LastFailure string    // the last one: "HTTP 503 token_unavailable" or the transport error; "" if none
}

// Endpoints reports each endpoint's state, in the order given to NewMulti.
func (c *Client) Endpoints() []EndpointState {
	now := time.Now().UnixNano()
	out := make([]EndpointState, len(c.eps))
	for i, e := range c.eps {
		du := e.downUntil.Load()
		e.mu.Lock()
		out[i] = EndpointState{URL: e.base, Down: du > now, Failures: e.failures, LastFailure: e.last}
		e.mu.Unlock()
		if du != 0 {
			out[i].DownUntil = time.Unix(0, du)
		}
	}
	return out
}

// Stats counts what the client did to get answers.
type Stats struct {
	// Failovers: requests sent again to another endpoint after one failed.
	Failovers uint64
	// Retries: requests sent again to an endpoint already tried in the
	// same call, after a backoff (every endpoint had failed).
	Retries uint64
	// Exhausted: calls that failed on every endpoint they may use
	// (an *UnavailableError).
	Exhausted uint64
}

// Stats returns the counters since New.
func (c *Client) Stats() Stats {
	return Stats{Failovers: c.failovers.Load(), Retries: c.retried.Load(), Exhausted: c.exhausted.Load()}
}

// order is the endpoints to try for one call: the healthy ones first (by
// the balance), then those passed over, the soonest back first.
func (c *Client) order() []*endpoint {
	if len(c.eps) == 1 {
		return c.eps
	}
	now := time.Now().UnixNano()
	up := make([]*endpoint, 0, len(c.eps))
	var down []*endpoint
	for _, e := range c.eps {
		if e.downUntil.Load() <= now {
			up = append(up, e)
		} else {
			down = append(down, e)
		}
	}
	if c.balance == Spread && len(up) > 1 {
		// Rotate over the healthy ones only, so the neighbour of a down
		// endpoint does not get its share as well.
		k := int((c.cursor.Add(1) - 1) % uint64(len(up)))
		up = append(up[k:], up[:k]...)
	}
	slices.SortFunc(down, func(a, b *endpoint) int { return cmp.Compare(a.downUntil.Load(), b.downUntil.Load()) })
	return append(up, down...)
}

// ErrUnavailable is matched (errors.Is) by an *UnavailableError: no
// endpoint gave an answer the call could use.
var ErrUnavailable = errors.New("keysvc: no endpoint answered")

// UnavailableError is the error of a call that got no usable answer: every
// endpoint it may use failed (connection error, timeout, 502, 503 or 504),
// or, for a call that is not safe to repeat, the one endpoint it was sent
// to failed. errors.Is(err, ErrUnavailable) holds, and the last failure is
// in the chain (errors.Is(err, wire.ErrTokenUnavailable) for a 503 of
// keysvc, a *url.Error for a connection error).
type UnavailableError struct {
	Method, Path string
	Tried        int  // distinct endpoints tried
	Endpoints    int  // endpoints the client has
	Attempts     int  // requests sent
	Repeatable   bool // false: the call is not safe to repeat and was sent once
	Last         error
}

func (e *UnavailableError) Error() string {
	if !e.Repeatable {
		return fmt.Sprintf("keysvc client: %s %s: not retried on another endpoint (not safe to repeat): %v", e.Method, e.Path, e.Last)
	}
	return fmt.Sprintf("keysvc client: %s %s: no endpoint answered (%d of %d endpoints tried, %d attempts): %v",
		e.Method, e.Path, e.Tried, e.Endpoints, e.Attempts, e.Last)
}

// Unwrap returns the last failure.
func (e *UnavailableError) Unwrap() error { return e.Last }

// Is matches ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// do sends cl to the endpoints by the rules of "Retries" and decodes the
// answer into cl.out.
func (c *Client) do(ctx context.Context, cl call) error {
	var body []byte
	if cl.in != nil {
		var err error
		if body, err = json.Marshal(cl.in); err != nil {
			return fmt.Errorf("keysvc client: encoding the request: %w", err)
		}
	}
	rounds := 1
	if cl.repeat && !cl.probe {
		rounds += c.retries
	}
	var (
		last     error
		attempts int
		prev     *endpoint
		tried    = map[*endpoint]bool{}
		barred   = map[*endpoint]bool{} // failed a certificate check: not tried again in this call
	)
	for r := range rounds {
		if r > 0 {
			if werr := sleep(ctx, backoff(r)); werr != nil {
				return fmt.Errorf("keysvc client: %s %s: %w (after %v)", cl.method, cl.path, werr, last)
			}
		}
		for _, ep := range c.order() {
			if barred[ep] {
				continue
			}
			switch {
			case prev == nil:
			case ep != prev:
				c.failovers.Add(1)
			default:
				c.retried.Add(1)
			}
			prev, tried[ep] = ep, true
			attempts++
			res, err := c.once(ctx, ep, cl, body)
			switch res {
			case stopped:
				return err
			case answered:
				if ep.failing.Swap(false) && c.onChange != nil {
					c.onChange(ep.base, true, nil)
				}
				return err
			case certFailed:
				barred[ep] = true
			}
			ep.markDown(c.downTime, err)
			if !ep.failing.Swap(true) && c.onChange != nil {
				c.onChange(ep.base, false, err)
			}
			last = err
			if !cl.repeat {
				c.exhausted.Add(1)
				return &UnavailableError{Method: cl.method, Path: cl.path, Tried: 1, Endpoints: len(c.eps), Attempts: 1, Last: err}
			}
		}
		if len(barred) == len(c.eps) {
			break
		}
	}
	c.exhausted.Add(1)
	return &UnavailableError{Method: cl.method, Path: cl.path, Tried: len(tried), Endpoints: len(c.eps), Attempts: attempts, Repeatable: true, Last: last}
}
