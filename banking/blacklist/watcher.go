package blacklist

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Watcher looks at its file by default.
const DefaultInterval = 10 * time.Second

// racyWindow: a file whose modification time is this close to the moment
// it was read may have changed again within the same timestamp tick, so
// it is read again at the next poll even if its time and size look the
// same (git's "racily clean" rule). 2 s covers the coarsest filesystems.
const racyWindow = 2 * time.Second

// Options tune a Watcher. Zero values take the defaults.
type Options struct {
	// Interval between looks at the file (default 10 s). Negative: never
	// poll; only Reload reads the file.
	Interval time.Duration
	// OnError is told when a changed file cannot be read or is malformed;
	// the list in force stays. It is called once per distinct failure,
	// not at every poll. Called from the polling goroutine or from Reload.
	OnError func(error)
	// OnReload is told when a new list is in force.
	OnReload func(*List)
}

// Watcher holds the list loaded from a file and swaps in a new one when
// the file changes. Its methods are safe for concurrent use; checks never
// wait for a reload.
type Watcher struct {
	path string
	opts Options
	cur  atomic.Pointer[List]

	mu      sync.Mutex // the fields below: one reload at a time
	seen    fileState
	badSum  [32]byte // digest of the last malformed file, reported once
	lastErr string   // the last reported failure, reported once

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type fileState struct {
	mod    time.Time
	size   int64
	readAt time.Time
}

// Open loads the list at path and starts watching it. A missing or
// malformed file at start is an error: a bank must not run unscreened
// (fail closed). Close stops the watching.
func Open(path string, opts Options) (*Watcher, error) {
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	w := &Watcher{path: path, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := w.reload(true); err != nil {
		return nil, err
	}
	if opts.Interval > 0 {
		go w.poll()
	} else {
		close(w.done)
	}
	return w, nil
}

// List returns the list in force.
func (w *Watcher) List() *List { return w.cur.Load() }

// CheckAccount returns an error wrapping ErrListed when the account number
// is listed, nil otherwise. It has the signature of ledger.Options.Screen.
func (w *Watcher) CheckAccount(number string) error {
	if m, ok := w.cur.Load().Account(number); ok {
		return fmt.Errorf("%w: account %s (list line %d)", ErrListed, m.Value, m.Line)
	}
	return nil
}

// CheckName returns an error wrapping ErrListed when the name is listed.
func (w *Watcher) CheckName(name string) error {
	if m, ok := w.cur.Load().Name(name); ok {
		return fmt.Errorf("%w: name (list line %d)", ErrListed, m.Line)
	}
	return nil
}

// Reload looks at the file now. It reports whether a new list came into
// force; an unchanged file is (false, nil). A file that cannot be read or
// is malformed leaves the old list in force and returns the error (which
// also goes to OnError, once).
func (w *Watcher) Reload() (bool, error) { return w.reload(false) }

// Close stops polling. Checks keep working on the last list.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.done
	return nil
}

func (w *Watcher) poll() {
	defer close(w.done)
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			_, _ = w.reload(false) // failures go to OnError
		}
	}
}

// reload reads the file if its time or size changed (or it is racy),
// and swaps the list in if the content changed and parses.
func (w *Watcher) reload(first bool) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if err != nil {
		return false, w.fail(first, fmt.Errorf("screening list %s: %w", w.path, err))
	}
	if !first && fi.ModTime().Equal(w.seen.mod) && fi.Size() == w.seen.size && w.seen.readAt.Sub(w.seen.mod) > racyWindow {
		return false, nil
	}
	data, err := readFile(w.path)
	if err != nil {
		return false, w.fail(first, fmt.Errorf("screening list %s: %w", w.path, err))
	}
	w.seen = fileState{mod: fi.ModTime(), size: fi.Size(), readAt: time.Now()}
	sum := sha256.Sum256(data)
	if cur := w.cur.Load(); cur != nil && cur.digest == sum {
		w.lastErr, w.badSum = "", [32]byte{} // back to the list in force
		return false, nil
	}
	if !first && sum == w.badSum {
		return false, fmt.Errorf("screening list %s (unchanged since refused): %w", w.path, ErrMalformed)
	}
	l, err := Parse(data)
	if err != nil {
		w.badSum = sum
		if first {
			return false, fmt.Errorf("screening list %s: %w", w.path, err)
		}
		return false, w.fail(false, fmt.Errorf("screening list %s: %w; the previous list stays in force", w.path, err))
	}
	w.cur.Store(l)
	w.lastErr, w.badSum = "", [32]byte{}
	if w.opts.OnReload != nil && !first {
		w.opts.OnReload(l)
	}
	return true, nil
}

// fail reports err through OnError unless it was the last one reported.
func (w *Watcher) fail(first bool, err error) error {
	if first {
		return err
	}
	if msg := err.Error(); msg != w.lastErr {
		w.lastErr = msg
		if w.opts.OnError != nil {
			w.opts.OnError(err)
		}
	}
	return err
}

// readFile reads at most MaxFileSize+1 bytes, so Parse refuses a huge file
// without the watcher holding all of it.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}
