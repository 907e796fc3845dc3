package bankwire

import "time"

// SignedOrder is a transfer order the customer signed with their USB key:
// the exact bytes (canonical JSON keyward.transfer.v1 or pain.001.001.09)
// and the signature (base64 DER ECDSA over SHA-256, or SM2 with SM3).
type SignedOrder struct {
	Order     []byte `json:"order"` // base64 in JSON
	Signature string `json:"signature"`
}

// TransferResult is an executed transfer and its signed receipt.
type TransferResult struct {
	TransferID string  `json:"transfer_id"`
	Replayed   bool    `json:"replayed,omitempty"` // the same order was executed before; nothing moved now
	Receipt    Receipt `json:"receipt"`
}

// Receipt is the bank's signed electronic receipt. Body is the exact
// signed bytes, a JSON document carried as a string so that no parser
// re-orders it; Signature is base64 DER ECDSA P-256 over SHA-256 of Body
// by the bank's receipt key (KeyReceipt):
//
//	openssl dgst -sha256 -verify bank-receipt.pem -signature receipt.sig receipt.json
type Receipt struct {
	Body      string `json:"body"`
	Signature string `json:"signature"`
}

// PendingTransfer is a cloud-key transfer waiting for the customer to
// confirm it on keysvc's second channel.
type PendingTransfer struct {
	ID        string          `json:"id"` // keysvc's confirmation id
	Status    string          `json:"status"`
	Digest    string          `json:"digest"`
	ExpiresAt time.Time       `json:"expires_at"`
	Reason    string          `json:"reason,omitempty"`
	Result    *TransferResult `json:"result,omitempty"`
}
