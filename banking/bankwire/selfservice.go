package bankwire

import "time"

// History is one page of an account's transactions, newest first
// (GET /v1/accounts/{account}/transactions?limit=&before=). Next, when
// set, is the opaque cursor of the following (older) page: send it back
// as before=. Pages never repeat or skip an entry while new postings
// arrive, since a cursor names a place in the account's own history.
type History struct {
	Account string         `json:"account"`
	Entries []HistoryEntry `json:"entries"`
	Next    string         `json:"next,omitempty"`
}

// HistoryEntry is one line of an account's history. Amount is signed
// (negative: money out), in the currency's minor-unit notation ("-12.00");
// BalanceAfter is the account's balance right after it.
type HistoryEntry struct {
	Time         time.Time     `json:"time"` // UTC
	Kind         string        `json:"kind"` // transfer, deposit or withdrawal
	Amount       string        `json:"amount"`
	Currency     string        `json:"currency"`
	BalanceAfter string        `json:"balance_after"`
	Counterparty *Counterparty `json:"counterparty,omitempty"` // absent for cash
	Memo         string        `json:"memo,omitempty"`         // the order's purpose, as the payer wrote it
	TransferID   string        `json:"transfer_id"`
}

// Counterparty is the other side of a transfer: the account masked as a
// card is ("6222 **** **** 3446") and its holder's name.
type Counterparty struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
}

// Payee is a saved payee (GET/POST /v1/payees).
type Payee struct {
	ID       string    `json:"id,omitempty"` // set by the bank
	Account  string    `json:"account"`
	Name     string    `json:"name"`
	Bank     string    `json:"bank,omitempty"`
	Nickname string    `json:"nickname,omitempty"`
	Created  time.Time `json:"created,omitzero"`
}

// Device is a device the bank knows for the customer (GET /v1/devices):
// forget it with DELETE /v1/devices/{ref}, which also ends its sessions.
// Current marks the device of the session asking.
type Device struct {
	Ref       string    `json:"ref"`
	Name      string    `json:"name,omitempty"`
	OS        string    `json:"os"`
	LastIP    string    `json:"last_ip"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Current   bool      `json:"current"`
}

// DeviceForgotten is the answer to DELETE /v1/devices/{ref}.
type DeviceForgotten struct {
	Ref           string `json:"ref"`
	SessionsEnded int    `json:"sessions_ended"`
}

// AntiPhishingRequest changes the customer's anti-phishing message
// (POST /v1/anti-phishing; seed 6.4.3): 1 to 20 characters, shown at
// every login and in GET /v1/me.
type AntiPhishingRequest struct {
	Message string `json:"message"`
}
