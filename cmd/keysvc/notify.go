package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/keysvc"
)

// notice is the JSON a notifier delivers: everything the holder's device
// needs to show the transaction and open the confirmation page. Link holds
// the holder token, a credential: the webhook must be HTTPS and the file
// 0600.
type notice struct {
	Key            string    `json:"key"`
	ConfirmationID string    `json:"confirmation_id"`
	Link           string    `json:"link"`
	Display        []string  `json:"display"`
	ExpiresAt      time.Time `json:"expires_at"`
}

func toNotice(base string, n keysvc.HolderNotice) notice {
	return notice{Key: n.Key, ConfirmationID: n.ConfirmationID, Link: strings.TrimRight(base, "/") + "/c/" + n.HolderToken, Display: n.Display, ExpiresAt: n.ExpiresAt}
}

// fileNotifier appends notices, one JSON object per line, to a 0600 file
// and, in dev mode, prints the link on the console. For development only:
// in production a holder's link must reach the holder's own device.
func fileNotifier(path, base string, console bool) keysvc.Notifier {
	var mu sync.Mutex
	return func(_ context.Context, n keysvc.HolderNotice) error {
		nt := toNotice(base, n)
		b, err := json.Marshal(nt)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		_, err = f.Write(append(b, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if console {
			fmt.Printf("\n[dev] confirmation %s for key %s waits for its holder until %s:\n      %s\n      %s\n\n",
				nt.ConfirmationID, nt.Key, nt.ExpiresAt.Local().Format("15:04:05"), strings.Join(nt.Display, "\n      "), nt.Link)
		}
		return err
	}
}

// webhookNotifier POSTs each notice as JSON to an HTTPS URL (the bank's
// push service, which forwards it to the holder's device). A non-2xx
// answer or no answer within 5 s refuses the sign request.
func webhookNotifier(url, caFile, base string) (keysvc.Notifier, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("confirm.notify.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("confirm.notify.ca holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	return func(ctx context.Context, n keysvc.HolderNotice) error {
		b, err := json.Marshal(toNotice(base, n))
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("notify webhook: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("notify webhook answered %s", resp.Status)
		}
		return nil
	}, nil
}
