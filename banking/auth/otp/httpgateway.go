package otp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// HTTPGateway is the production Gateway: it hands each text to the bank's
// SMS provider (or its relay) as one HTTPS request,
//
//	POST <URL>   Content-Type: application/json   Authorization: Bearer <Token>
//	{"phone":"13812345678","text":"【Keyward银行】验证码 123456，用于登录确认，5分钟内有效。请勿向任何人…"}
//
// and counts any 2xx answer as accepted. It keeps nothing: no code is
// written anywhere on the bank's side. Its errors name the provider's
// status, never the phone or the text. It is safe for concurrent use.
type HTTPGateway struct {
	url    string
	token  string
	client *http.Client
}

var _ Gateway = (*HTTPGateway)(nil)

// ErrGatewayURL is a gateway URL that is not https (plain http is allowed
// only to a loopback relay on the same machine).
var ErrGatewayURL = errors.New("otp: the SMS gateway URL must be https:// (or http:// to a loopback address)")

// NewHTTPGateway returns a gateway posting to rawURL with the bearer token
// (none if empty); client nil is a client with a 10 s timeout.
func NewHTTPGateway(rawURL, token string, client *http.Client) (*HTTPGateway, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%w: %q is not an absolute URL without credentials", ErrGatewayURL, rawURL)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !isLoopback(u.Hostname())) {
		return nil, ErrGatewayURL
	}
	if client == nil {
		client = &http.Client{Timeout: DefaultSendTimeout}
	}
	return &HTTPGateway{url: u.String(), token: token, client: client}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send posts the text; nil means the provider accepted it.
func (g *HTTPGateway) Send(ctx context.Context, phone, text string) error {
	body, err := json.Marshal(struct {
		Phone string `json:"phone"`
		Text  string `json:"text"`
	}{phone, text})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("otp: sms gateway request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is configuration, not news; the body never appears
		}
		return fmt.Errorf("otp: sms gateway: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otp: sms gateway answered %d after %s", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
