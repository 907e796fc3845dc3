package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// Defaults for the zero values of Config.
const (
	DefaultBodyLimit    = httpedge.DefaultBodyLimit // 1 MiB
	DefaultReadTimeout  = httpedge.DefaultReadTimeout
	DefaultWriteTimeout = httpedge.DefaultWriteTimeout
	DefaultIdleTimeout  = httpedge.DefaultIdleTimeout
)

// Config configures a Server.
type Config struct {
	// Backend does the work; required.
	Backend Backend
	// Clients are the applications admitted to /v1 (R-SRV-2).
	Clients []Client
	// BodyLimit is the largest request body accepted, in bytes; larger
	// bodies get 413 body_too_large. Default 1 MiB.
	BodyLimit int
	// Timeouts of the HTTP server; defaults 10 s, 10 s and 60 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Logger receives refused requests and internal errors; default
	// slog.Default().
	Logger *slog.Logger
	// Registry receives the server's metrics, which MetricsHandler serves
	// (on a listener of its own, never the API's); nil means a new
	// registry with the Go and process collectors.
	Registry *prometheus.Registry
}

// Client is one application admitted to the API.
type Client struct {
	// Name is the client's identity: the CommonName of its TLS client
	// certificate, and the name key policies grant operations to.
	Name string
	// Admin clients may create keys and read and manage every key.
	Admin bool
	// TokenSHA256 is the hex SHA-256 of the client's bearer token; empty
	// for certificate-only clients. Tokens are never stored in clear.
	TokenSHA256 string
	// EnrolPrefixes lets a non-admin client create customer keys under
	// these name prefixes (keysvc.Caller.EnrolPrefixes).
	EnrolPrefixes []string
}

// Server is the keysvc HTTP API.
type Server struct {
	serving
	backend Backend
	clients *registry
	metrics *metrics
	scrape  http.Handler // the registry's exposition, see MetricsHandler
	log     *slog.Logger
	// writeTimeout is Config.WriteTimeout: a backup's stream pushes the
	// connection's write deadline on by it as it goes (backup.go).
	writeTimeout time.Duration
}

// serving is the listening part shared by Server and ConfirmServer: the
// fiber app, and a closed flag so Serve after Shutdown refuses.
type serving struct {
	app    *fiber.App
	mu     sync.Mutex
	closed bool
}

// App returns the underlying fiber application (for tests and for
// mounting extra routes before serving).
func (s *serving) App() *fiber.App { return s.app }

// Serve serves plain HTTP on ln until Shutdown; it then returns nil. Use
// it behind a TLS-terminating proxy or on loopback only.
func (s *serving) Serve(ln net.Listener) error {
	return s.serve(lingerListener{ln})
}

// ServeTLS serves HTTPS on ln with tlsCfg (see TLSConfig) until Shutdown.
func (s *serving) ServeTLS(ln net.Listener, tlsCfg *tls.Config) error {
	if tlsCfg == nil {
		return errors.New("api: ServeTLS needs a TLS configuration")
	}
	return s.serve(tls.NewListener(lingerListener{ln}, tlsCfg))
}

func (s *serving) serve(ln net.Listener) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	return s.app.Listener(ln)
}

// Shutdown stops accepting connections, closes idle ones and waits for
// in-flight requests to finish, or for ctx to end (then it returns
// ctx.Err() and requests still running are abandoned to finish alone).
func (s *serving) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.app.ShutdownWithContext(ctx)
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("api: server closed")

// New builds a Server from cfg. It checks the client table (unique names,
// well-formed token digests) and registers the metrics.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("api: Config.Backend is required")
	}
	if cfg.BodyLimit < 0 {
		return nil, errors.New("api: Config.BodyLimit must not be negative")
	}
	clients, err := newRegistry(cfg.Clients)
	if err != nil {
		return nil, err
	}
	s := &Server{backend: cfg.Backend, clients: clients, log: cfg.Logger, writeTimeout: orDefault(cfg.WriteTimeout, DefaultWriteTimeout)}
	if s.log == nil {
		s.log = slog.Default()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = defaultRegistry()
	}
	if s.metrics, err = newMetrics(reg, cfg.Backend); err != nil {
		return nil, fmt.Errorf("api: registering metrics: %w", err)
	}
	s.app = httpedge.New(httpedge.Config{
		Logger:       s.log,
		BodyLimit:    orDefault(cfg.BodyLimit, DefaultBodyLimit),
		ReadTimeout:  orDefault(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout: orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:  orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		Errors:       errorTable,
		Realm:        "keyward",
	})
	s.scrape = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s.log}})
	s.routes()
	return s, nil
}

// MetricsHandler serves the Prometheus exposition at /metrics (and
// answers 404 elsewhere). It is not part of the API listener: serve it on
// a listener of its own that only the monitoring system reaches (cmd/keysvc's
// metrics.listen; loopback in dev mode, off by default). The metrics name
// no keys (R-AV-2).
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.scrape)
	return mux
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// TLSConfig loads the server's certificate and key and, when clientCAFile
// is set, requires every client to present a certificate issued by one of
// the CAs in that PEM file (mutual TLS; the certificate's CommonName names
// the client). Without clientCAFile no client certificate is asked for
// and clients authenticate with bearer tokens only.
//
// TLS 1.2 is the minimum; TLS 1.2 suites are limited to ECDHE with AEAD.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("api: loading the server certificate: %w", err)
	}
	return tlsConfig(cert, clientCAFile)
}

// TLSConfigKeyPEM is TLSConfig with the private key given as PEM bytes
// instead of a file: keysvc's TLS key kept in its sealed secrets file
// (package keysvc/secrets) never touches the disk in clear.
func TLSConfigKeyPEM(certFile string, keyPEM []byte, clientCAFile string) (*tls.Config, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("api: reading the server certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors don't quote the key; keep it that way.
		return nil, fmt.Errorf("api: the server certificate %s and the sealed TLS key don't make a key pair: %w", certFile, err)
	}
	return tlsConfig(cert, clientCAFile)
}

func tlsConfig(cert tls.Certificate, clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3 suites are all AEAD
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		ClientAuth: tls.NoClientCert,
	}
	if clientCAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("api: reading the client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("api: client CA file %s holds no PEM certificate", clientCAFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// Lingering close bounds.
const (
	lingerTimeout = 2 * time.Second
	lingerMax     = 8 << 20
)

// lingerListener gives its connections a lingering close (as nginx and
// net/http do). fasthttp answers an oversize body with 413 and closes at
// once, without reading the body; closing a socket with unread data sends
// a TCP reset, which can destroy the 413 before the client reads it. A
// lingering close sends FIN after the response, then reads and discards
// what the client still sends (for at most lingerTimeout and lingerMax
// bytes) before closing.
type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		return c, nil
	}
	return &lingerConn{Conn: c}, nil
}

type lingerConn struct {
	net.Conn
	once sync.Once
}

// Close half-closes the connection and finishes closing it in the
// background; it never blocks the server's worker.
func (c *lingerConn) Close() error {
	var err error
	c.once.Do(func() {
		if err = c.Conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			err = c.Conn.Close()
			return
		}
		go func() {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.Conn, lingerMax)
			_ = c.Conn.Close()
		}()
	})
	return err
}

// slogPrinter adapts slog to promhttp's Println logger.
type slogPrinter struct{ log *slog.Logger }

func (l slogPrinter) Println(v ...any) { l.log.Error("metrics", "detail", fmt.Sprint(v...)) }
