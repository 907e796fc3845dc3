// Package tpm seals keysvc's local secrets to the host TPM 2.0 and keeps a TPM-resident
// ECC P-256 signing key (issue 8). A fuller manual follows in a later commit.
package tpm
