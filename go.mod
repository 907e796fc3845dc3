module github.com/keyward/keyward

go 1.26.8

require (
	github.com/miekg/pkcs11 v1.1.2
	go.etcd.io/bbolt v1.5.0
	golang.org/x/crypto v0.59.0
	golang.org/x/term v0.48.0
)

require golang.org/x/sys v0.50.0 // indirect
