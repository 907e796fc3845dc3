// Package bankwire is the banking API as data: the requests and answers a
// customer's client (cmd/bankcli) sends to and reads from the bank's HTTP
// API — enrolment, login, sealed secrets, signed transfer orders, receipts,
// pending cloud-key transfers — and the corporate roles. It imports the
// standard library only, so a customer's client links neither the bank's
// stores nor keysvc nor a PKCS#11 driver.
//
// Package banking (the bank itself) uses these types in its handlers and
// methods; the JSON field names here are the API.
//
// # Secrets on the wire
//
// A password (or another secret) never travels in clear inside TLS: the
// client asks for a single-use challenge, encrypts secret ‖ 0x00 ‖ the 32
// challenge bytes to the bank's SM2 login key (C1C3C2, ASN.1), and sends it
// as a Sealed value naming the challenge and the login key's version.
//
// # Orders and receipts
//
// A USB-key customer signs the exact bytes of a transfer order (canonical
// JSON keyward.transfer.v1 or ISO 20022 pain.001.001.09) and sends them
// with the signature as a SignedOrder. The answer, a TransferResult,
// carries the bank's Receipt: the exact signed bytes as a string and a
// base64 DER ECDSA P-256 signature over their SHA-256, which anyone can
// check with the bank's receipt public key:
//
//	openssl dgst -sha256 -verify bank-receipt.pem -signature receipt.sig receipt.json
//
// A cloud-key customer's transfer waits for their confirmation on
// keysvc's second channel: the bank answers a PendingTransfer, whose
// Result is set once the customer has approved and the transfer executed.
package bankwire
