// Package httpedge is the one HTTP edge of Keyward's services: keysvc's
// API and confirmation servers (keysvc/api) and the bank's API (banking)
// build their fiber apps with New and decode request bodies with Decode,
// so both refuse the same bodies, answer errors in the same envelope,
// recover from panics, send the same headers and log with request ids the
// same way (issue 14 item 3).
//
//	app := httpedge.New(httpedge.Config{Logger: log, Errors: table, Realm: "keyward"})
//	app.Post("/v1/things", func(c *fiber.Ctx) error {
//		var req ThingRequest
//		if err := httpedge.Decode(c, &req); err != nil {
//			return err // a *DecodeError: the error handler answers 400, 413 or 415
//		}
//		…
//	})
//
// It is a leaf: it imports no Keyward package (cmd/internal/layering's
// TestEdgeIsALeaf), so banking, which must build without cgo, may use it.
// It lives under keysvc/wire because, like wire, it is what keysvc's
// clients may share of keysvc.
//
// # Strict JSON
//
// Decode parses with github.com/go-json-experiment/json (the proposed
// encoding/json/v2) rather than encoding/json: it matches member names
// exactly, and rejects duplicate names and invalid UTF-8 by default, and
// rejects unknown members when asked, all with typed errors that carry
// the JSON pointer of the fault — where encoding/json matches names
// case-insensitively, keeps the last of two duplicate names, replaces bad
// UTF-8 silently and reports an unknown field only as text. A refusal is
// a *DecodeError: its Kind, the JSON path (Path, an RFC 6901 pointer) and
// a Message naming the path and what to do, never the value (bodies carry
// passwords, PINs and plaintexts). A field type that implements
// Describer says what its JSON looks like in those messages; a field
// type's own UnmarshalJSON errors are shown as written, so they too must
// quote no value.
//
// # Errors
//
// Every error leaves as {"error":{"code":"…","message":"…"}} (Envelope).
// Config.Classify decides: an *Error is shown as is; a *DecodeError by
// its Status and Code; then the service's Table (sentinels matched with
// errors.Is, first row wins; a row's Message replaces an error text that
// is not for clients); then fiber's own errors with a fixed text per
// status; anything else is 500 internal with MsgInternal, and the error is
// logged (R-SRV-4). The edge's own codes:
//
//	status  code                    cause
//	400     invalid_json            empty body, not an object, malformed JSON, bad UTF-8, a repeated name, data after the object
//	400     unknown_field           a member the request type does not have, or has in another case
//	400     invalid_argument        a value of the wrong type or range, or refused by its type's UnmarshalJSON
//	400     bad_request             an HTTP request fasthttp could not parse
//	404     not_found               no such route
//	405     method_not_allowed      the route exists for another method
//	408     request_timeout         the request was not read within ReadTimeout
//	413     body_too_large          body over Config.BodyLimit
//	415     unsupported_media_type  a body that is not application/json (charset utf-8 or none), or is compressed
//	429     rate_limited            a fiber limiter's refusal, when it returns fiber.ErrTooManyRequests
//	431     headers_too_large       request headers over fiber's read buffer
//	500     internal                anything else, and panics (logged, never shown)
//
// Config.InvalidCode folds the three 400 decode codes into one, for a
// service that publishes a single code for a bad request (banking:
// invalid_request).
//
// Config.Localize, when set, writes each error's message in the reader's
// language (banking: Chinese by default, English on Accept-Language: en,
// with Content-Language set); the status and code never change with it,
// and the log keeps the English text. keysvc sets none: its messages
// are English.
//
// # Headers, panics and request ids
//
// Every answer, errors included, carries X-Content-Type-Options: nosniff,
// Cache-Control: no-store, X-Frame-Options: DENY, Referrer-Policy:
// no-referrer, a Content-Security-Policy (StrictCSP unless Config.CSP
// names another, for a server that serves HTML) and, on TLS (or behind a
// proxy that says X-Forwarded-Proto: https), Strict-Transport-Security
// for a year. A panic in a handler is answered 500 internal; its value
// and stack go to the log, never to the client.
//
// X-Request-Id: a client's id of 8 to 64 characters from [A-Za-z0-9._-]
// is kept, anything else is replaced by 128 random bits in hex; the id is
// echoed in the answer and put in the request's user context
// (RequestID). Logger(c) is the request's logger: every line carries
// request_id, method and route — the route pattern (/v1/keys/:name),
// never the raw path, which can hold tokens.
//
// A service's own logger wrapped in ContextHandler adds the request id
// to every line it logs with the request's context (log.WarnContext(ctx,
// …)), however deep: banking's Bank does this.
//
// # Limitations
//
// A line logged from a middleware, before fiber has matched the route
// (keysvc's /v1 admission, for example), names that middleware's
// pattern (/v1), not the route's. Lines a service logs without the
// request's context (keysvc's Service logs without it today) carry no
// request id. Errors fiber raises before any middleware runs (an
// oversize body) get the headers and a fresh request id from the error
// handler, but their log lines (if any) carry no request id.
package httpedge
