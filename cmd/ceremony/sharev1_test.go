package main

import "time"

// encodeShareV1 is the share encoder as it was before issue 13 (format
// v1: the header only in the readable lines), kept to make the v1 shares
// a bank may hold in its safe.
func encodeShareV1(sh share, custodian string, index, n int, created time.Time) []byte {
	payload := append(append(append([]byte{}, sh.backupID...), byte(sh.threshold)), sh.value...)
	return renderShare(payload, checksum(shareDomainV1, payload), shareBeginV1, shareEndV1, sh, custodian, index, n, created)
}
