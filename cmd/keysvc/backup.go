package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyward/keyward/cmd/internal/secretfile"
	"github.com/keyward/keyward/keysvc/client"
)

// keysvc backup (issue 17, R-AV-3): a hot copy of the running keysvc's
// store, taken by keysvc itself through its admin API (a running keysvc
// holds bbolt's exclusive lock: no other process can copy the file
// consistently). It reaches keysvc as the officers' KEK rotation does —
// over its HTTPS API with an admin client's credentials — and finds it
// from the same config file keysvc runs with: the listen address (a
// wildcard host becomes loopback) and, unless -ca is given, the server
// certificate itself (tls.cert), pinned: keysvc must present exactly that
// certificate. The copy is written to a temporary file beside -out (mode
// 0600), fsynced, checked against keysvc's trailers, then renamed to
// -out; an existing -out is refused.
func backupCmd(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	configPath := fs.String("config", os.Getenv("KEYWARD_CONFIG"), "the running keysvc's YAML config (env KEYWARD_CONFIG): where it listens and its certificate")
	out := fs.String("out", "", "the backup file to write (must not exist; written 0600, atomically)")
	tokenFile := fs.String("token-file", "", "file holding an admin client's bearer token (mode 0600)")
	certFile := fs.String("client-cert", "", "an admin client's certificate PEM, when keysvc requires mutual TLS (tls.client_ca)")
	keyFile := fs.String("client-key", "", "the client certificate's private key PEM")
	urlFlag := fs.String("url", "", "keysvc's base URL (default: https://<config listen>, a wildcard host as 127.0.0.1)")
	caFile := fs.String("ca", "", "PEM CA that issued keysvc's certificate (default: pin the config's tls.cert)")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" || *out == "" || (*tokenFile == "" && *certFile == "") {
		return errors.New("usage: keysvc backup -config keysvc.yaml -token-file admin.token -out FILE [-client-cert pem -client-key pem] [-url https://host:port] [-ca ca.pem]")
	}
	if (*certFile == "") != (*keyFile == "") {
		return errors.New("backup: give -client-cert and -client-key together")
	}
	if _, err := os.Lstat(*out); err == nil {
		return fmt.Errorf("backup: %s exists: choose a new file (a backup never overwrites one)", *out)
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	base := *urlFlag
	if base == "" {
		if base, err = localURL(cfg.Listen); err != nil {
			return err
		}
	}
	tlsCfg, err := backupTLS(cfg.TLS.Cert, *caFile, *certFile, *keyFile)
	if err != nil {
		return err
	}
	opts := []client.Option{client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}})}
	if *tokenFile != "" {
		bearer, err := secretfile.Read(*tokenFile)
		if err != nil {
			return fmt.Errorf("backup: -token-file: %w", err)
		}
		opts = append(opts, client.WithBearer(bearer))
	}
	cl, err := client.New(base, opts...)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	info, err := writeBackup(ctx, cl, *out)
	if err != nil {
		return err
	}
	fmt.Printf("backup written: %s\n  size %d bytes\n  sha256 %s\n  took %s; keysvc's audit log records it (op backup, this size and sha256)\n",
		*out, info.Size, info.SHA256, time.Since(start).Round(time.Millisecond))
	if cfg.Store.Backend == backendEtcd {
		fmt.Println("  an etcd snapshot of the WHOLE etcd keyspace: restore it into a new etcd cluster (etcdutl snapshot restore), README \"Backing up keysvc\"")
	} else {
		fmt.Println("  a bbolt store file: restore it as <data_dir>/keysvc.db (wrapped keys open only with the same token's KEKs), README \"Backing up keysvc\"")
	}
	return nil
}

// writeBackup streams the backup into a temporary file beside out, syncs
// it, and renames it to out only when keysvc's trailers confirm it whole;
// then syncs the directory so the rename survives a crash.
func writeBackup(ctx context.Context, cl *client.Client, out string) (client.BackupInfo, error) {
	dir := filepath.Dir(out)
	f, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*.partial")
	if err != nil {
		return client.BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (client.BackupInfo, error) {
		f.Close()
		os.Remove(tmp)
		return client.BackupInfo{}, fmt.Errorf("backup: %w (nothing was written to %s)", err, out)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	info, err := cl.Backup(ctx, f)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, out); err != nil { // never replaces an out created meanwhile
		os.Remove(tmp)
		return client.BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	os.Remove(tmp)
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return info, fmt.Errorf("backup: syncing %s: %w", dir, err)
		}
	}
	return info, nil
}

// localURL is keysvc's base URL on this host from its listen address.
func localURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("backup: the config's listen %q is not host:port: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// backupTLS trusts caFile's CAs, or else exactly the certificate in
// certFile (the config's tls.cert: this keysvc's own), and presents a
// client certificate when given.
func backupTLS(certFile, caFile, clientCert, clientKey string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if clientCert != "" {
		pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
		if err != nil {
			return nil, fmt.Errorf("backup: -client-cert/-client-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("backup: -ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("backup: -ca: no PEM certificate in %s", caFile)
		}
		cfg.RootCAs = pool
		return cfg, nil
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("backup: the config's tls.cert: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("backup: the config's tls.cert %s holds no PEM certificate", certFile)
	}
	pinned := blk.Bytes
	// Pinning replaces chain and host-name checks: the connection is
	// accepted only if keysvc presents this very certificate.
	cfg.InsecureSkipVerify = true
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || !bytes.Equal(raw[0], pinned) {
			return fmt.Errorf("the server at this address does not present keysvc's certificate %s (another service? use -url and -ca)", certFile)
		}
		return nil
	}
	return cfg, nil
}
