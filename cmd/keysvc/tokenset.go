package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/token"
)

// tokenSet opens every token of cfg.Tokens (each with its own session pool;
// one PIN guard store, whose counters are per token serial) and builds the
// token set over them (token.Set, issue 15). A token that is away at start
// (token.IsAway: not found, not present) joins the set DOWN as a
// token.LazyStore, opened by the set's prober when it answers; any other
// error (a bad URI, a module that does not load, an unreadable PIN source,
// a PIN refused or locked) stops the start, and so does a set none of
// whose tokens opens. The set learns which keys
// every token must hold from the Service, once it exists: call started.
// The set's events (a member down, re-admitted, brought level at start)
// go to keysvc's audit log; those before started are kept until then.
// close stops the set's prober and closes the tokens.
type tokenSet struct {
	set   *token.Set
	toks  []*token.Token
	later []*token.LazyStore // tokens away at start (opened by the set's prober)
	svc   atomic.Pointer[keysvc.Service]
	log   *slog.Logger

	evMu    sync.Mutex
	pending []token.SetEvent // events before the Service exists
}

// A token away at start is a token.LazyStore in the set: admit and
// keysvc's KEK and service-key checks take it as a keysvc.KeyStore.
var _ keysvc.KeyStore = (*token.LazyStore)(nil)

func openTokenSet(ctx context.Context, cfg *Config, pin token.PINSource, pins token.CounterStore, log *slog.Logger) (*tokenSet, error) {
	ts := &tokenSet{log: log}
	var members []token.SetMember
	var away []string
	for i, tc := range cfg.Tokens {
		tcfg := token.Config{Kind: token.KindHSM, URI: tc.URI, Module: tc.Module, PIN: pin,
			PINGuard: token.GuardConfig{Store: pins, Limit: cfg.PINGuard.Limit}, MaxSessions: tc.MaxSessions, WaitTimeout: tc.WaitTimeout, Logger: log}
		tok, err := token.Open(ctx, tcfg)
		if err != nil && token.IsAway(err) {
			// R-AV-4: a restart during one HSM's outage starts on the
			// others; this one joins the set down and is opened, checked
			// and caught up when it answers (token.LazyStore).
			ls, lerr := token.OpenLater(tcfg)
			if lerr != nil {
				ts.close()
				return nil, fmt.Errorf("tokens[%d] (%s): %w", i, tc.Name, lerr)
			}
			ts.later = append(ts.later, ls)
			members = append(members, token.SetMember{Name: tc.Name, Store: ls})
			away = append(away, fmt.Sprintf("tokens[%d] (%s): %v", i, tc.Name, err))
			continue
		}
		if err != nil {
			ts.close()
			return nil, fmt.Errorf("tokens[%d] (%s): %w", i, tc.Name, err)
		}
		ts.toks = append(ts.toks, tok)
		members = append(members, token.SetMember{Name: tc.Name, Store: tok.Store()})
	}
	if len(ts.toks) == 0 {
		ts.close()
		return nil, fmt.Errorf("%w: none of the %d tokens of the set could be opened: %s", token.ErrNoMemberUp, len(cfg.Tokens), strings.Join(away, "; "))
	}
	for _, a := range away {
		log.Warn("token set: a token is away at start; keysvc starts without it and opens it when it answers (if it stays down, check that its URI names it)",
			"token", a)
	}
	set, err := token.NewSet(ctx, token.SetConfig{Members: members, ProbeInterval: cfg.ProbeInterval, Managed: ts.managed, Admit: ts.admit, OnEvent: ts.onEvent, Logger: log})
	if err != nil {
		ts.close()
		return nil, err
	}
	ts.set = set
	return ts, nil
}

func (ts *tokenSet) managed(ctx context.Context) ([]string, error) {
	svc := ts.svc.Load()
	if svc == nil {
		return nil, errors.New("keysvc is still starting: its key records are not open yet")
	}
	return svc.ManagedLabels(ctx)
}

// admit is keysvc's say before the set re-admits a token: the KEKs of
// retired epochs on it are destroyed (audited), and its service keys must
// match the store's record (Service.AdmitMember): a token restored from
// another ceremony, or one that missed a whole KEK rotation, must not serve.
func (ts *tokenSet) admit(ctx context.Context, m token.Member) error {
	svc := ts.svc.Load()
	if svc == nil {
		return errors.New("keysvc is still starting: its service-key record is not open yet")
	}
	ks, ok := m.(keysvc.KeyStore)
	if !ok {
		return fmt.Errorf("token set member %T is not a key store keysvc can check", m)
	}
	return svc.AdmitMember(ctx, ks)
}

// onEvent writes a set event to keysvc's audit log, or keeps it until the
// Service exists (a member down at start).
func (ts *tokenSet) onEvent(ev token.SetEvent) {
	ts.evMu.Lock()
	svc := ts.svc.Load()
	if svc == nil {
		ts.pending = append(ts.pending, ev)
		ts.evMu.Unlock()
		return
	}
	ts.evMu.Unlock()
	ts.record(svc, ev)
}

func (ts *tokenSet) record(svc *keysvc.Service, ev token.SetEvent) {
	if err := svc.RecordTokenSetEvent(ev); err != nil {
		ts.log.Error("token set: the event could not be written to the audit log", "event", ev.Kind.String(), "member", ev.Member, "err", err)
	}
}

// started hands the set the Service and brings every token that is up
// level with keysvc's records (a token that missed changes while keysvc
// was stopped).
func (ts *tokenSet) started(ctx context.Context, svc *keysvc.Service, log *slog.Logger) {
	ts.evMu.Lock()
	ts.svc.Store(svc)
	pending := ts.pending
	ts.pending = nil
	ts.evMu.Unlock()
	for _, ev := range pending {
		ts.record(svc, ev)
	}
	if err := ts.set.Sync(ctx); err != nil {
		log.Error("token set: could not bring every token level at start; the prober keeps trying on re-admissions", "err", err)
	}
}

func (ts *tokenSet) close() {
	if ts.set != nil {
		ts.set.Close()
	}
	for _, t := range ts.toks {
		t.Close()
	}
	for _, l := range ts.later {
		l.Close()
	}
}

func (ts *tokenSet) names(cfg *Config) []string {
	out := make([]string, 0, len(cfg.Tokens))
	for _, tc := range cfg.Tokens {
		out = append(out, tc.Name)
	}
	return out
}
