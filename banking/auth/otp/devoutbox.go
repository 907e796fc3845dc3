package otp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// Message is one text the DevOutbox holds.
type Message struct {
	At    time.Time `json:"at"`
	Phone string    `json:"phone"`
	Text  string    `json:"text"`
	// ExpiresAt is when the code in Text dies; the message leaves the
	// outbox then (at the Service's next Sweep), or as soon as the code is
	// used.
	ExpiresAt time.Time `json:"expires_at"`
}

// DevOutbox is the development and test Gateway: it keeps the texts it
// received in memory and, when opened with a path, in a 0600 JSON-lines
// file that a developer can read. It holds codes in clear, by design, so
// it keeps each only while the code can be used: a code leaves the outbox
// (memory and file) once Verify accepts it or once it expires (the
// Service's Sweep; see Keeper). Never use it in production: cmd/banking
// opens it only in dev mode.
type DevOutbox struct {
	mu   sync.Mutex
	msgs []Message
	path string // "": memory only
	now  func() time.Time
}

// DevOutboxLimit is how many messages a DevOutbox keeps at most.
const DevOutboxLimit = 1000

var (
	_ Gateway = (*DevOutbox)(nil)
	_ Keeper  = (*DevOutbox)(nil)
)

// ErrOutboxMode is returned when the outbox file is readable or writable
// by group or others.
var ErrOutboxMode = errors.New("otp: dev outbox file must be mode 0600 or stricter")

// NewDevOutbox returns an in-memory outbox.
func NewDevOutbox() *DevOutbox { return &DevOutbox{now: time.Now} }

// OpenDevOutbox returns an outbox that also keeps its messages in path,
// created with mode 0600. An existing file with wider permissions is
// refused rather than fixed: someone else may already have read it. The
// messages of an existing file whose codes are still alive are kept; the
// others, and every line without an expiry (written before outboxes
// expired their codes), are dropped from the file at once.
func OpenDevOutbox(path string) (*DevOutbox, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("otp: dev outbox: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("otp: dev outbox: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is %v", ErrOutboxMode, path, st.Mode()&fs.ModePerm)
	}
	o := &DevOutbox{path: path, now: time.Now}
	now := o.now()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m Message
		if json.Unmarshal(sc.Bytes(), &m) == nil && now.Before(m.ExpiresAt) && len(o.msgs) < DevOutboxLimit {
			o.msgs = append(o.msgs, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("otp: dev outbox: %w", err)
	}
	if err := o.save(); err != nil {
		return nil, err
	}
	return o, nil
}

// Send records a text whose code lives at most MaxTTL.
func (o *DevOutbox) Send(ctx context.Context, phone, text string) error {
	return o.SendUntil(ctx, phone, text, o.now().Add(MaxTTL))
}

// SendUntil records a text whose code dies at expires.
func (o *DevOutbox) SendUntil(ctx context.Context, phone, text string, expires time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.msgs) == DevOutboxLimit {
		o.msgs = append(o.msgs[:0], o.msgs[1:]...)
	}
	o.msgs = append(o.msgs, Message{At: o.now(), Phone: phone, Text: text, ExpiresAt: expires})
	return o.save()
}

// Spent drops the texts sent to phone that hold code.
func (o *DevOutbox) Spent(phone, code string) error {
	return o.drop(func(m Message) bool { return m.Phone == phone && codeRE.FindString(m.Text) == code })
}

// Expire drops the texts whose code died at or before now.
func (o *DevOutbox) Expire(now time.Time) error {
	return o.drop(func(m Message) bool { return !now.Before(m.ExpiresAt) })
}

// drop removes the messages dead reports, and rewrites the file if any.
func (o *DevOutbox) drop(dead func(Message) bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	kept := o.msgs[:0]
	for _, m := range o.msgs {
		if !dead(m) {
			kept = append(kept, m)
		}
	}
	if len(kept) == len(o.msgs) {
		return nil
	}
	clear(o.msgs[len(kept):])
	o.msgs = kept
	return o.save()
}

// save replaces the file with the messages held (a new 0600 file renamed
// over the old one, so a reader never sees half of it). Caller holds mu.
func (o *DevOutbox) save() error {
	if o.path == "" {
		return nil
	}
	var buf bytes.Buffer
	for _, m := range o.msgs {
		line, _ := json.Marshal(m)
		buf.Write(append(line, '\n'))
	}
	tmp, err := os.CreateTemp(filepath.Dir(o.path), ".sms-outbox-*")
	if err == nil { // CreateTemp makes it 0600
		_, err = tmp.Write(buf.Bytes())
		err = errors.Join(err, tmp.Close())
		if err == nil {
			err = os.Rename(tmp.Name(), o.path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	clear(buf.Bytes())
	if err != nil {
		return fmt.Errorf("otp: dev outbox write: %w", err)
	}
	return nil
}

// Messages returns a copy of the messages kept.
func (o *DevOutbox) Messages() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Message(nil), o.msgs...)
}

// Last returns the newest message sent to phone.
func (o *DevOutbox) Last(phone string) (Message, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.msgs) - 1; i >= 0; i-- {
		if o.msgs[i].Phone == phone {
			return o.msgs[i], true
		}
	}
	return Message{}, false
}

var codeRE = regexp.MustCompile(`\b[0-9]{6}\b`)

// LastCode returns the 6-digit code in the newest message sent to phone
// (the first run of exactly six digits in it).
func (o *DevOutbox) LastCode(phone string) (string, bool) {
	m, ok := o.Last(phone)
	if !ok {
		return "", false
	}
	c := codeRE.FindString(m.Text)
	return c, c != ""
}

// Close is kept for callers of the former file-holding outbox: the file
// is written whole at each change and never held open, so there is
// nothing to release.
func (o *DevOutbox) Close() error { return nil }
