package otp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sync"
	"time"
)

// Message is one text the DevOutbox received.
type Message struct {
	At    time.Time `json:"at"`
	Phone string    `json:"phone"`
	Text  string    `json:"text"`
}

// DevOutbox is the development and test Gateway: it keeps the last
// DevOutboxLimit messages in memory and, when opened with a path, appends
// each as a JSON line to a 0600 file that a developer can tail. It holds
// codes in clear, by design: never use it in production.
type DevOutbox struct {
	mu   sync.Mutex
	msgs []Message
	f    *os.File
	now  func() time.Time
}

// DevOutboxLimit is how many messages a DevOutbox keeps in memory.
const DevOutboxLimit = 1000

var _ Gateway = (*DevOutbox)(nil)

// ErrOutboxMode is returned when the outbox file is readable or writable
// by group or others.
var ErrOutboxMode = errors.New("otp: dev outbox file must be mode 0600 or stricter")

// NewDevOutbox returns an in-memory outbox.
func NewDevOutbox() *DevOutbox { return &DevOutbox{now: time.Now} }

// OpenDevOutbox returns an outbox that also appends to path, created with
// mode 0600. An existing file with wider permissions is refused rather than
// fixed: someone else may already have read it.
func OpenDevOutbox(path string) (*DevOutbox, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("otp: dev outbox: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("otp: dev outbox: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is %v", ErrOutboxMode, path, st.Mode()&fs.ModePerm)
	}
	return &DevOutbox{f: f, now: time.Now}, nil
}

// Send records the message.
func (o *DevOutbox) Send(ctx context.Context, phone, text string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := Message{At: o.now(), Phone: phone, Text: text}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.msgs) == DevOutboxLimit {
		o.msgs = append(o.msgs[:0], o.msgs[1:]...)
	}
	o.msgs = append(o.msgs, m)
	if o.f != nil {
		line, _ := json.Marshal(m)
		if _, err := o.f.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("otp: dev outbox write: %w", err)
		}
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

// Close closes the file, if any.
func (o *DevOutbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}
