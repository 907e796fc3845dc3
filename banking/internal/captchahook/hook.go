// Package captchahook lets banking's tests learn a captcha's answer the
// way a person would — from the image, which a test cannot read — by
// being told at issue. Production never sets it: the answer is then
// nowhere but in the image sent to the client (banking/captcha stores
// only a keyed MAC of it). Go's internal rule keeps every command from
// importing this package, so nothing outside banking can set it.
package captchahook

import "sync"

var (
	mu      sync.Mutex
	answers map[string]string
)

// Record starts keeping the answer of every captcha issued in this
// process from now on; the returned stop ends it and forgets them.
func Record() (stop func()) {
	mu.Lock()
	defer mu.Unlock()
	answers = map[string]string{}
	return func() {
		mu.Lock()
		defer mu.Unlock()
		answers = nil
	}
}

// Issued is called by banking/captcha with each new captcha's id and
// answer; it keeps them only while a test records.
func Issued(id, answer string) {
	mu.Lock()
	defer mu.Unlock()
	if answers != nil {
		answers[id] = answer
	}
}

// Answer returns the answer of captcha id, if recorded.
func Answer(id string) (string, bool) {
	mu.Lock()
	defer mu.Unlock()
	a, ok := answers[id]
	return a, ok
}
