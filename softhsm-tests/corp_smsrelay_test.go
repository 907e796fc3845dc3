package softhsmtests

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/banking/auth/otp"
)

// smsRelay stands in for the bank's SMS provider in the real-process
// tests: cmd/banking (production path, sms.gateway_url) posts each text to
// it, and it appends it to path as an otp.Message JSON line, where the
// tests read the codes (procSMSCodes). It returns the gateway URL. The
// bank itself keeps no code anywhere (issue 12 item 8).
func smsRelay(t testing.TB, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m otp.Message
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&m) != nil || m.Phone == "" {
			http.Error(w, "want POST {phone, text}", http.StatusBadRequest)
			return
		}
		m.At = time.Now()
		line, _ := json.Marshal(m)
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			_, err = f.Write(append(line, '\n'))
			f.Close()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// The file exists from the start, as the outbox file did.
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	return "http://" + ln.Addr().String() + "/sms"
}

// corpNoSMSText fails if any file under the given paths (directories are
// walked) holds the text of an SMS code: the bank's production path keeps
// codes nowhere, neither in its data directory nor in its log.
func corpNoSMSText(t testing.TB, paths ...string) {
	t.Helper()
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte("Your verification code")) {
				t.Errorf("%s holds an SMS code's text", p)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}
