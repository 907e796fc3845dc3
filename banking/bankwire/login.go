package bankwire

import "time"

// LoginRequest is a login: the login name, the sealed password, and the
// client's device id and OS (for step-up decisions).
type LoginRequest struct {
	Login    string `json:"login"`
	Password Sealed `json:"password"`
	Device   string `json:"device"`
	OS       string `json:"os"`
	// DeviceName is what the customer calls this device ("Ana's phone",
	// "办公室电脑"; optional, at most 32 characters), shown in GET
	// /v1/devices once the device is known.
	DeviceName string `json:"device_name,omitempty"`
	// CaptchaID and Captcha answer an image captcha (GET
	// /v1/login/captcha), required after repeated failed logins of the
	// login or from the source (code captcha_required). A captcha sent is
	// always checked, once.
	CaptchaID string `json:"captcha_id,omitempty"`
	Captcha   string `json:"captcha,omitempty"`
}

// Captcha is GET /v1/login/captcha: an image of digits to type into
// LoginRequest.Captcha, with its id. The answer never leaves the server.
type Captcha struct {
	ID      string    `json:"id"`
	Image   string    `json:"image"` // base64 (standard) of a PNG
	Expires time.Time `json:"expires"`
}

// LoginResult is a new session. With StepUp the session can do nothing but
// complete the SMS step-up (the code was sent to the registered phone).
type LoginResult struct {
	Session      string `json:"session"`
	StepUp       bool   `json:"step_up"`
	StepUpReason string `json:"step_up_reason,omitempty"`
	AntiPhishing string `json:"anti_phishing"`
	Customer     string `json:"customer"`
}
