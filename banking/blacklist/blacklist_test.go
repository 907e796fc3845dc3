package blacklist_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/blacklist"
)

const goodList = "\uFEFF# test list\r\n" +
	"account:6222 0210 0112 3456 789\r\n" +
	"account:gb29-nwbk-6016-1331-9268-19\n" +
	"\n" +
	"name:张三\n" +
	"name:  John   SMITH \n" +
	"name:阿卜杜勒·拉希德\n" +
	"end:5\n" +
	"# trailing comment\n"

func TestMatch(t *testing.T) {
	l, err := blacklist.Parse([]byte(goodList))
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 5 || len(l.Digest()) != 64 {
		t.Fatalf("Len %d, digest %q", l.Len(), l.Digest())
	}
	accounts := []struct {
		in     string
		listed bool
	}{
		{"6222021001123456789", true},
		{"6222-0210-0112-3456-789", true},
		{"６２２２０２１００１１２３４５６７８９", true}, // full-width digits
		{"GB29NWBK60161331926819", true},
		{"6222021001123456788", false},
		{"622202100112345678", false},
		{"not a number!", false},
		{"", false},
	}
	for _, tc := range accounts {
		if _, got := l.Account(tc.in); got != tc.listed {
			t.Errorf("Account(%q) = %v, want %v", tc.in, got, tc.listed)
		}
	}
	names := []struct {
		in     string
		listed bool
	}{
		{"张三", true},
		{" 张三 ", true},
		{"张\u200b三", true},         // zero-width space inside
		{"john smith", true},       // case
		{"JOHN\u3000SMITH", true},  // ideographic space
		{"Ｊｏｈｎ　Ｓｍｉｔｈ", true},       // full-width letters and space
		{"John\t\n Smith", true},   // white-space runs
		{"Jo\u00adhn Smith", true}, // soft hyphen
		{"阿卜杜勒・拉希德", true},         // katakana middle dot
		{"阿卜杜勒•拉希德", true},         // bullet
		{"阿卜杜勒･拉希德", true},         // half-width katakana middle dot
		{"張三", false},              // traditional: a different name
		{"张三丰", false},             // no partial matches
		{"Zhang San", false},       // no transliteration
		{"John Smyth", false},      // no fuzzy matching
		{"Smith John", false},      // no reordering
		{"", false},
	}
	for _, tc := range names {
		if _, got := l.Name(tc.in); got != tc.listed {
			t.Errorf("Name(%q) = %v, want %v", tc.in, got, tc.listed)
		}
	}
	if m, _ := l.Name("JOHN SMITH"); m.Line != 6 || m.Value != "john smith" || m.Kind != blacklist.KindName {
		t.Errorf("match %+v", m)
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, file string
		line       int
		reason     string
	}{
		{"no end", "account:622202100112345678\n", 0, "no end:"},
		{"empty file", "", 0, "no end:"},
		{"truncated count", "name:a\nname:b\nend:3\n", 3, "holds 2 entries"},
		{"entry after end", "name:a\nend:1\nname:b\n", 3, "after end"},
		{"unknown kind", "iban:123456\nend:1\n", 1, "unknown kind"},
		{"no colon", "6222021001123456789\nend:1\n", 1, "want account:"},
		{"empty value", "name:  \nend:1\n", 1, "want account:"},
		{"invisible name", "name:\u200b\nend:1\n", 1, "empty once normalised"},
		{"bad account", "account:6222*0210\nend:1\n", 1, "only digits"},
		{"short account", "account:12345\nend:1\n", 1, "6 to 34"},
		{"long name", "name:" + strings.Repeat("x", 257) + "\nend:1\n", 1, "longer than"},
		{"bad utf8", "name:\xff\nend:1\n", 0, "UTF-8"},
		{"bad count", "name:a\nend:one\n", 2, "end:one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := blacklist.Parse([]byte(tc.file))
			var pe *blacklist.ParseError
			if !errors.As(err, &pe) || !errors.Is(err, blacklist.ErrMalformed) {
				t.Fatalf("Parse = %v, want a *ParseError", err)
			}
			if pe.Line != tc.line || !strings.Contains(pe.Reason, tc.reason) {
				t.Fatalf("ParseError{%d, %q}, want line %d mentioning %q", pe.Line, pe.Reason, tc.line, tc.reason)
			}
		})
	}
}

// errs collects OnError reports.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) { e.mu.Lock(); e.list = append(e.list, err); e.mu.Unlock() }
func (e *errs) n() int        { e.mu.Lock(); defer e.mu.Unlock(); return len(e.list) }

func writeList(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.txt")
	if _, err := blacklist.Open(path, blacklist.Options{}); err == nil {
		t.Fatal("Open of a missing file succeeded")
	}
	writeList(t, path, "name:\nend:1\n")
	if _, err := blacklist.Open(path, blacklist.Options{}); !errors.Is(err, blacklist.ErrMalformed) {
		t.Fatalf("Open of a malformed file: %v", err)
	}
	writeList(t, path, "account:6222021001123456789\nend:1\n")
	var reported errs
	var reloads atomic.Int32
	w, err := blacklist.Open(path, blacklist.Options{Interval: -1, OnError: reported.add,
		OnReload: func(*blacklist.List) { reloads.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.CheckAccount("6222021001123456789"); !errors.Is(err, blacklist.ErrListed) {
		t.Fatalf("CheckAccount(listed) = %v", err)
	}
	if err := w.CheckName("张三"); err != nil {
		t.Fatalf("CheckName(not listed) = %v", err)
	}
	if changed, err := w.Reload(); changed || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v", changed, err)
	}

	// Changed in place (same size, same second): still noticed.
	writeList(t, path, "name:张三\nend:1\n"+strings.Repeat("#", len("account:6222021001123456789\n")-len("name:张三\n")))
	if changed, err := w.Reload(); !changed || err != nil {
		t.Fatalf("Reload after a change = %v, %v", changed, err)
	}
	if w.CheckName("张三") == nil || w.CheckAccount("6222021001123456789") != nil || reloads.Load() != 1 {
		t.Fatal("new list not in force")
	}

	// A malformed file (a half-written one: no end line) keeps the old
	// list and is reported once, however often it is looked at.
	writeList(t, path, "name:张三\nname:李四\n")
	for range 3 {
		if changed, err := w.Reload(); changed || !errors.Is(err, blacklist.ErrMalformed) {
			t.Fatalf("Reload of a malformed file = %v, %v", changed, err)
		}
	}
	if reported.n() != 1 || w.CheckName("张三") == nil || w.CheckName("李四") != nil {
		t.Fatalf("%d reports (want 1); old list in force: %v", reported.n(), w.CheckName("张三"))
	}
	// The file disappears: the old list stays, reported once.
	os.Remove(path)
	w.Reload()
	w.Reload()
	if reported.n() != 2 || w.CheckName("张三") == nil {
		t.Fatalf("%d reports after removal", reported.n())
	}
	// Fixed: in force.
	writeList(t, path, "name:张三\nname:李四\nend:2\n")
	if changed, err := w.Reload(); !changed || err != nil || w.CheckName("李四") == nil {
		t.Fatalf("Reload of the fixed file = %v, %v", changed, err)
	}
	// The same bad file again, after a good one: reported again.
	writeList(t, path, "name:张三\nname:李四\n")
	if _, err := w.Reload(); !errors.Is(err, blacklist.ErrMalformed) || reported.n() != 3 {
		t.Fatalf("bad file again: %v, %d reports", err, reported.n())
	}
}

// TestWatcherPolls changes the file under a polling watcher while
// goroutines check names (run with -race).
func TestWatcherPolls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.txt")
	writeList(t, path, "name:alice\nend:1\n")
	var reported errs
	w, err := blacklist.Open(path, blacklist.Options{Interval: 10 * time.Millisecond, OnError: reported.add})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Every list in this test lists alice or bob: a snapshot
				// is always one whole list.
				l := w.List()
				_, a := l.Name("Alice")
				_, b := l.Name("BOB")
				if !a && !b {
					t.Error("a check saw no list")
					return
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	writeList(t, path, "name:bob\nend:1\n")
	waitFor("bob listed", func() bool { return w.CheckName("bob") != nil && w.CheckName("alice") == nil })
	writeList(t, path, "name:alice\nname:eve\n") // malformed
	waitFor("the malformed file reported", func() bool { return reported.n() == 1 })
	if w.CheckName("bob") == nil {
		t.Fatal("old list dropped for a malformed file")
	}
	writeList(t, path, "name:alice\nname:eve\nend:2\n")
	waitFor("alice and eve listed", func() bool { return w.CheckName("eve") != nil })
	close(stop)
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
