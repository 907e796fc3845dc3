package banking

import (
	"fmt"
	"github.com/keyward/keyward/token/l10n"
	"time"

	"github.com/keyward/keyward/banking/auth/bruteforce"
)

// The customer-facing texts of the staff acts and of the login lock, in
// one place (issue 18 items 5-6), so they can be translated together.
// None holds a secret; phone numbers appear masked.

// untilText is "14:05 China time (06:05 UTC)", with the date when the
// moment is not on today's date in China.
func untilText(until, now time.Time) string {
	lc, ln := until.In(l10n.China), now.In(l10n.China)
	layout := "15:04"
	if lc.Format(time.DateOnly) != ln.Format(time.DateOnly) {
		layout = "2006-01-02 15:04"
	}
	return fmt.Sprintf("%s China time (%s UTC)", lc.Format(layout), until.UTC().Format(layout))
}

// lockMessage is what a customer reads when a login is refused by the
// brute-force guard (code temporarily_locked): until when, and — for a
// lock of the login itself — that a teller can lift it after checking
// identity. A lock of the source address is not the customer's to have
// lifted at a branch: it names the network instead.
func lockMessage(le *bruteforce.LockedError, now time.Time) string {
	if le.Scope == bruteforce.ScopeIP {
		return fmt.Sprintf("too many failed logins from your network: logins from it are locked until %s; try again then", untilText(le.Until, now))
	}
	return fmt.Sprintf("too many failed logins: this login is locked until %s. A teller at any branch can lift the lock sooner after checking your identity document", untilText(le.Until, now))
}

// lockedLogin is the error a locked login gets: it reads as lockMessage
// and still matches bruteforce.ErrLocked (and the scope's sentinel), so
// the error table answers 429 temporarily_locked.
type lockedLogin struct {
	le  *bruteforce.LockedError
	msg string
}

func (e *lockedLogin) Error() string { return e.msg }
func (e *lockedLogin) Unwrap() error { return e.le }

// phoneNoticeOld goes to the number that was registered; phoneNoticeNew
// to the number now registered (6.4.3: the customer hears of a change to
// their second channel on both).
func phoneNoticeOld(newMasked string, at time.Time) string {
	// In Chinese, as every SMS of the bank's (its customers read Chinese;
	// the one-time codes' texts are banking/auth/otp's).
	return fmt.Sprintf("【Keyward银行】安全提醒：您的网上银行预留手机号码已于 %s 在柜台变更为 %s，此后短信验证码不再发送到本号码。如非本人办理，请立即致电本行。",
		l10n.Clock(at, l10n.Chinese), newMasked)
}

func phoneNoticeNew(oldMasked string, at time.Time) string {
	return fmt.Sprintf("【Keyward银行】安全提醒：本号码已于 %s 成为您网上银行的预留手机号码（原号码 %s）。您已在所有设备上退出登录，请重新登录。银行工作人员不会索要您的短信验证码。",
		l10n.Clock(at, l10n.Chinese), oldMasked)
}
