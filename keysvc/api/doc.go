// Package api is keysvc's HTTP API: a fiber v2 server in front of a
// Backend (the keysvc Service), with one admission control, one error
// table, Prometheus metrics and an OpenAPI document. The fiber app, strict
// JSON decoding, the error envelope, panic recovery, security headers and
// request ids are keysvc/wire/httpedge's, shared with banking.
//
//	srv, err := api.New(api.Config{Backend: svc, Clients: clients})
//	tlsCfg, err := api.TLSConfig("server.pem", "server.key", "clients-ca.pem")
//	go srv.ServeTLS(ln, tlsCfg)
//	…
//	srv.Shutdown(ctx) // in-flight requests finish
//
// # Routes
//
// Every /v1 route except /v1/openapi.json needs authentication.
//
//	POST /v1/keys                                  CreateKeyRequest → KeyView (201)
//	GET  /v1/keys                                  → {"keys":[KeyView…]}
//	GET  /v1/keys/{name}                           → KeyView
//	POST /v1/keys/{name}/rotate                    (no body or {}) → KeyView
//	POST /v1/keys/{name}/mac                       {"message"} → {"mac","version"} (hmac-sm3 keys)
//	POST /v1/keys/{name}/mac-verify                {"message","mac"} → {"valid":bool}
//	POST /v1/keys/{name}/settings                  KeySettingsRequest → KeyView (min_version, rotation_period)
//	POST /v1/keys/{name}/sign                      SignRequest → SignResult
//	POST /v1/keys/{name}/sign-batch                {"items":[SignRequest…]} (1–1000) → {"signatures":[SignResult…]}
//	POST /v1/keys/{name}/verify                    VerifyRequest → {"valid":bool}
//	POST /v1/keys/{name}/encrypt                   {"plaintext":b64,"aad":b64} → {"ciphertext","version"}
//	POST /v1/keys/{name}/decrypt                   {"ciphertext","aad":b64} → {"plaintext":b64}
//	POST /v1/keys/{name}/datakey                   {"size":16|24|32 (default 32),"aad":b64} → DataKey
//	POST /v1/keys/{name}/versions/{v}/{action}     action: disable | enable | schedule-destroy | cancel-destroy → KeyView
//	                                               (schedule-destroy takes an optional ScheduleDestroyRequest)
//	GET  /v1/keys/{name}/public?version=N          → PublicKeyResult (no version: the primary)
//	POST /v1/admin/kek-rotation                    (no body or {}) → KEKRotationStatus (202): start the KEK rotation (admin only)
//	GET  /v1/admin/kek-rotation                    → KEKRotationStatus: KEK epochs and rotation progress (admin only)
//	GET  /v1/admin/backup                          → the store's hot copy, streamed; SHA-256 and size in trailers (admin only; 409 while one runs)
//	GET  /v1/openapi.json                          the OpenAPI document (openapi.json, embedded)
//	GET  /healthz                                  200 {"status":"ok"} while the process serves
//	GET  /readyz                                   200 {"status":"ready"}, or 503 with an error code;
//	                                               with a token set, also "tokens": each token's state
//	                                               (ready while one is up)
//
// Keys are always returned as wire.KeyView: token object labels and
// wrapped blobs never leave the service. Key names match
// ^[a-z0-9][a-z0-9._-]{0,63}$; version numbers are positive decimal
// integers. Binary JSON fields are standard base64 with padding.
//
// # Authentication (R-SRV-2)
//
// One middleware admits every /v1 request:
//
//  1. With mutual TLS (TLSConfig with a client CA file), the verified
//     client certificate's Subject CommonName names the client; it must be
//     listed in Config.Clients. An unknown name is refused (401), even
//     with a valid bearer token beside it.
//  2. Otherwise "Authorization: Bearer <token>": the token's SHA-256 is
//     compared in constant time with every client's TokenSHA256. Tokens
//     are never stored in clear.
//  3. Otherwise 401 unauthenticated.
//
// Without a client CA the server asks for no certificate: bearer only.
// Authorisation is per key and belongs to the Backend (wire.ErrForbidden
// → 403). Admission also sets keysvc.Caller.BodySHA256, the SHA-256 of the
// request body, which the Service keys before it reaches an audit record
// (audit.DigestScheme). Refusals are logged at Info.
//
// # Errors
//
// Every error is {"error":{"code":"…","message":"…"}}. Clients match on
// code; the message is for people. Backend errors are mapped by errors.Is
// in one table (errors.go) and their message (err.Error()) is shown as is,
// so the Service writes messages safe to show. Any other error becomes 500
// internal with a fixed message, and the real error is logged (R-SRV-4).
//
//	status  code                    cause
//	400     invalid_json            malformed JSON, empty body, data after the value, not an object,
//	                                a field name given twice, a string that is not UTF-8
//	400     unknown_field           a field the request type does not have, or has in another case
//	                                (names are case-sensitive; the message names the JSON path)
//	400     invalid_argument        wrong JSON type, bad base64, bad key name, version or size, batch size;
//	                                wire.ErrInvalidArgument
//	400     wrong_purpose           wire.ErrWrongPurpose
//	400     invalid_ciphertext      wire.ErrInvalidCiphertext
//	400     invalid_signature       wire.ErrInvalidSignature (malformed; a mismatch is {"valid":false})
//	400     decryption_failed       wire.ErrDecrypt
//	400     bad_request             an HTTP request fasthttp could not parse
//	401     unauthenticated         no, unknown or invalid credentials; wire.ErrUnauthenticated
//	403     forbidden               wire.ErrForbidden (the key's policy)
//	404     key_not_found           wire.ErrKeyNotFound
//	404     version_not_found       wire.ErrVersionNotFound
//	404     not_found               no such route
//	405     method_not_allowed      the route exists for another method
//	408     request_timeout         the request was not read within ReadTimeout
//	409     key_exists              wire.ErrKeyExists
//	409     illegal_transition      wire.ErrIllegalTransition
//	409     version_not_usable      wire.ErrVersionNotUsable
//	413     body_too_large          body over Config.BodyLimit
//	415     unsupported_media_type  a POST body that is not uncompressed application/json
//	431     headers_too_large       request headers over fiber's read buffer (4 KiB)
//	500     internal                anything else (logged, never shown)
//	503     token_unavailable       wire.ErrTokenUnavailable
//	503     token_locked            wire.ErrTokenLocked
//	503     audit_unavailable       wire.ErrAuditUnavailable
//	503     store_unavailable       wire.ErrStore
//	503     not_ready               /readyz only: Ready failed with an unmapped error
//
// # Limits
//
// Bodies: Config.BodyLimit (default 1 MiB), uncompressed (a Content-Encoding
// other than identity is refused: fiber would inflate it past the limit).
// Timeouts: read 10 s, write 10 s, idle 60 s by default. sign-batch: at most
// MaxBatch (1000) items. /readyz bounds Backend.Ready to 5 s.
//
// Every answer carries X-Request-Id (the client's, if 8 to 64 characters
// of [A-Za-z0-9._-], else a new one), X-Content-Type-Options: nosniff,
// Cache-Control: no-store, X-Frame-Options: DENY, Referrer-Policy:
// no-referrer, a Content-Security-Policy that allows nothing, and on TLS
// Strict-Transport-Security; log lines for a request carry its
// request_id and route pattern, never the raw path.
//
// Connections close lingeringly (FIN after the response, then up to 2 s of
// reading and discarding), so a client still sending an oversize body
// reads its 413 instead of a TCP reset. A panic in a handler or the
// Backend is logged with its stack and answered 500 internal.
//
// # Metrics (R-AV-2)
//
// Server.MetricsHandler serves GET /metrics, on a listener of its own that
// only the monitoring system reaches; the API listener does not serve it.
//
//	keyward_operations_total{op,result}         result is "ok" or the error code
//	keyward_operation_duration_seconds{op}      buckets 0.1 ms … 1 s
//	keyward_pool_sessions_in_use, keyward_pool_sessions_max, keyward_token_healthy,
//	keyward_pin_failures, keyward_pin_locked    read from Backend.Stats at scrape time
//	keyward_kek_epoch, keyward_kek_rotation_active, keyward_kek_rotation_done, keyward_kek_rotation_total
//	                                            the KEK epoch and a rotation's progress in keys
//
// No label names a key: key names are customer ids, and per-key activity
// belongs in the audit log.
//
// # Concurrency
//
// A Server serves requests concurrently; the Backend must be safe for
// concurrent use. Backend calls get the request's user context, which
// Shutdown does not cancel: in-flight operations finish (or the Shutdown
// context expires first and Shutdown returns its error).
//
// # Limitations
//
// The server cannot tell when a client drops its connection: fasthttp
// does not cancel a request's context when its client goes away, so an
// abandoned operation still runs to completion (and is audited).
// GET /v1/keys is not paginated. The client table is fixed at New; a
// restart picks up changes.
package api
