package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// etcdConfig is a valid cluster node's config (store backend etcd); cases
// replace one line of it.
const etcdConfig = `
node: keysvc-1
data_dir: /var/lib/keyward
tls: {cert: s.pem, key: k.pem}
token: {uri: "pkcs11:token=bank"}
store:
  backend: etcd
  etcd:
    endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]
    ca: /etc/keyward/etcd-ca.pem
    cert: /etc/keyward/etcd-client.pem
    key: /etc/keyward/etcd-client-key.pem
clients: [{name: a}]
`

func TestStoreConfigEtcd(t *testing.T) {
	c, err := loadConfig(writeConfig(t, etcdConfig))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	e := c.Store.Etcd
	checks := []struct {
		field     string
		got, want any
	}{
		{"node", c.Node, "keysvc-1"},
		{"store.backend", c.Store.Backend, "etcd"},
		{"len(store.etcd.endpoints)", len(e.Endpoints), 3},
		{"store.etcd.endpoints[2]", e.Endpoints[2], "https://10.0.0.3:2379"},
		{"store.etcd.ca", e.CA, "/etc/keyward/etcd-ca.pem"},
		{"store.etcd.cert", e.Cert, "/etc/keyward/etcd-client.pem"},
		{"store.etcd.key", e.Key, "/etc/keyward/etcd-client-key.pem"},
		{"store.etcd.prefix (default)", e.Prefix, "/keyward/"},
		{"store.etcd.request_timeout (default)", e.RequestTimeout, 5 * time.Second},
		{"store.etcd.dial_timeout (default)", e.DialTimeout, 5 * time.Second},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.field, ch.got, ch.want)
		}
	}
}

func TestStoreConfigBoltDefault(t *testing.T) {
	c, err := loadConfig(writeConfig(t, "data_dir: /d\ntls: {cert: c.pem, key: k.pem}\ntoken: {uri: \"pkcs11:token=t\"}\nclients: [{name: a}]\n"))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	host, _ := os.Hostname()
	if c.Store.Backend != "bbolt" || c.Node != host {
		t.Errorf("store.backend = %q, node = %q; want bbolt and the host name %q", c.Store.Backend, c.Node, host)
	}
	if e := c.Store.Etcd; e.Prefix != "" || e.RequestTimeout != 0 {
		t.Errorf("bbolt config got etcd defaults: %+v", e)
	}
}

// TestStoreConfigRefuses: each case changes one line of etcdConfig (old →
// new) and wants the error to name the field. No message may repeat a
// value from the file.
func TestStoreConfigRefuses(t *testing.T) {
	const secretish = "s3cr3t-Value"
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown field", "    ca: /etc/keyward/etcd-ca.pem", "    ca: /etc/keyward/etcd-ca.pem\n    password: " + secretish,
			"store.etcd.password: unknown field; allowed here: endpoints, ca, cert, key,"},
		{"unknown backend", "  backend: etcd", "  backend: " + secretish, "store.backend must be bbolt or etcd"},
		{"http endpoint", "https://10.0.0.2:2379", "http://10.0.0.2:2379", "store.etcd.endpoints[1] must be https://host:port"},
		{"endpoint without a port", "https://10.0.0.3:2379", "https://" + secretish, "store.etcd.endpoints[2] must be https://host:port"},
		{"endpoint with credentials", "https://10.0.0.1:2379", "https://u:" + secretish + "@10.0.0.1:2379", "store.etcd.endpoints[0] must be https://host:port"},
		{"repeated endpoint", "https://10.0.0.3:2379", "https://10.0.0.1:2379", "store.etcd.endpoints[2] repeats another endpoint"},
		{"no endpoints", "    endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]", "    endpoints: []", "store.etcd.endpoints is required"},
		{"missing ca", "    ca: /etc/keyward/etcd-ca.pem", "", "store.etcd.ca is required"},
		{"missing cert", "    cert: /etc/keyward/etcd-client.pem", "", "store.etcd.cert is required"},
		{"missing key", "    key: /etc/keyward/etcd-client-key.pem", "", "store.etcd.key is required (or secrets.file holding an etcd-client-key)"},
		{"bad prefix", "    ca: /etc/keyward/etcd-ca.pem", "    ca: /etc/keyward/etcd-ca.pem\n    prefix: " + secretish, "store.etcd.prefix must start and end with '/'"},
		{"request timeout too short", "    ca: /etc/keyward/etcd-ca.pem", "    ca: /etc/keyward/etcd-ca.pem\n    request_timeout: 1ms", "store.etcd.request_timeout must be between 100ms and 1m"},
		{"dial timeout too long", "    ca: /etc/keyward/etcd-ca.pem", "    ca: /etc/keyward/etcd-ca.pem\n    dial_timeout: 2h", "store.etcd.dial_timeout must be between 100ms and 1m"},
		{"etcd section on bbolt", "  backend: etcd", "  backend: bbolt", "store.etcd is set but store.backend is not etcd"},
		{"etcd section without a backend", "  backend: etcd", "", "store.etcd is set but store.backend is not etcd"},
		{"bad node name", "node: keysvc-1", "node: \"" + secretish + " x\"", "node must be 1-63 of"},
		{"tpm audit signer", "clients: [{name: a}]", "clients: [{name: a}]\ntpm: /dev/tpmrm0\naudit: {signer: tpm}", "audit.signer tpm is one host's key"},
		{"no data_dir", "data_dir: /var/lib/keyward", "", "data_dir is required (with store.backend etcd it holds node-local files only)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(etcdConfig, c.old) {
				t.Fatalf("case %q: %q is not in etcdConfig", c.name, c.old)
			}
			_, err := loadConfig(writeConfig(t, strings.Replace(etcdConfig, c.old, c.new, 1)))
			if err == nil {
				t.Fatal("loadConfig accepted it")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), secretish) {
				t.Errorf("err repeats a value from the file: %q", err)
			}
		})
	}
}

// The etcd client key may come from the sealed secrets file instead.
func TestStoreConfigKeyFromSecrets(t *testing.T) {
	text := strings.Replace(etcdConfig, "    key: /etc/keyward/etcd-client-key.pem\n", "", 1) +
		"secrets: {file: /etc/keyward/keysvc.secrets, passphrase: \"file:/run/keyward/pass\"}\n"
	text = strings.Replace(text, "tls: {cert: s.pem, key: k.pem}", "tls: {cert: s.pem}", 1)
	if _, err := loadConfig(writeConfig(t, text)); err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
}
