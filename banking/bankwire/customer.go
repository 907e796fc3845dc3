package bankwire

// CustomerView is what the customer (and staff) see: masks only.
type CustomerView struct {
	ID           string `json:"id"`
	Login        string `json:"login"`
	Name         string `json:"name"`
	Phone        string `json:"phone"`
	IDCard       string `json:"id_card"`
	Card         string `json:"card"`
	AntiPhishing string `json:"anti_phishing"`
	USBKey       bool   `json:"usb_key"`
	CloudKey     bool   `json:"cloud_key"`
	Corporate    string `json:"corporate,omitempty"`
	Role         Role   `json:"role,omitempty"`
}

// EnrolRequest is a teller's enrolment of a customer after identity checks
// at the counter. The password arrives encrypted like a login (Sealed).
type EnrolRequest struct {
	Login        string `json:"login"`
	Name         string `json:"name"`
	Phone        string `json:"phone"`
	IDCard       string `json:"id_card"`
	Card         string `json:"card"`
	AntiPhishing string `json:"anti_phishing"`
	Password     Sealed `json:"password"`
	// USBPublicKey is the PEM public key of the customer's USB key (EC
	// P-256 or SM2), if they have one.
	USBPublicKey string `json:"usb_public_key,omitempty"`
	USBAlgorithm string `json:"usb_algorithm,omitempty"` // ec-p256 (default) or sm2
	// CloudKey asks for a cloud signing key held in keysvc, confirmed by
	// the customer on keysvc's second channel.
	CloudKey  bool   `json:"cloud_key,omitempty"`
	Corporate string `json:"corporate,omitempty"`
	Role      Role   `json:"role,omitempty"`
	Currency  string `json:"currency,omitempty"` // of the first account; default CNY
}

// Sealed is a password (or other secret) encrypted to the bank's SM2 login
// key with a single-use challenge: base64 of SM2 C1C3C2 (ASN.1) over
// secret ‖ 0x00 ‖ the 32 challenge bytes.
type Sealed struct {
	Challenge  string `json:"challenge"`
	Ciphertext string `json:"ciphertext"`
	KeyVersion int    `json:"key_version"`
}

// EnrolResult is the enrolment outcome, with the one-time holder setup
// code of the cloud key (hand it to the customer; it sets the key's PIN on
// keysvc's confirmation endpoint).
type EnrolResult struct {
	Customer        CustomerView `json:"customer"`
	Account         string       `json:"account"`
	HolderSetupCode string       `json:"holder_setup_code,omitempty"`
}

// Role is a corporate operator's role. Entry, review and authorisation
// are three roles, and a corporate transfer executes only after all three,
// by three different people (maker-checker).
type Role string

// Corporate roles.
const (
	RoleAdmin      Role = "admin"      // manages operators; moves no money
	RoleMaker      Role = "maker"      // enters orders
	RoleReviewer   Role = "reviewer"   // reviews entered orders
	RoleAuthoriser Role = "authoriser" // authorises reviewed orders; they execute
)

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleMaker || r == RoleReviewer || r == RoleAuthoriser
}
