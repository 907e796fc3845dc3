package api

import (
	"errors"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/text/language"

	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/token"
	"github.com/keyward/keyward/token/l10n"
)

// pageTexts are every text the confirmation and enrolment pages show,
// keyed by the English text (issue 18: Chinese first). Templates use them
// with {{.T "…"}}, the handlers through tr (formatted) and txt; TestPageCatalogue finds
// both in the sources and asserts each has its Chinese text. Some keys are
// shown only in Chinese: where the English page relays keysvc's own
// English message (which names the key, the status, the count), the
// Chinese page says the same from the error's type instead.
var pageTexts = l10n.NewCatalog(map[string]string{
	// confirm.html
	"Confirm this transaction":        "确认交易",
	"A request to sign with your key": "您的密钥",
	"is waiting for you. Check every line against the transaction you meant to send; approve only if all of it is right.": "有一笔待签署的请求。请逐行核对是否与您要发送的交易一致，全部无误才可批准。",
	"Transaction": "交易内容",
	"Fingerprint": "指纹",
	"SHA-256 of exactly the bytes that will be signed; compare it with the one your banking application shows.": "将被签署的字节的 SHA-256 值；请与您的网银应用显示的值比对。",
	"This request expires at":         "此请求过期时间：",
	"; after that nothing is signed.": "；过期后不会签署任何内容。",
	"Holder PIN (needed to approve)":  "持有人 PIN（批准时需要）",
	"Approve":                         "批准签署",
	"Reject":                          "拒绝",
	"Rejecting needs no PIN. Six wrong PINs in a row lock the key until the bank unlocks it.": "拒绝无需 PIN。连续输错 6 次 PIN，密钥将被锁定，须由银行解锁。",
	"Language": "语言",

	// enrol.html
	"Set your holder PIN": "设置持有人 PIN",
	"Set the PIN that approves transactions signed with your key. You need the key's name and the one-time setup code the bank gave you.": "设置用于批准密钥签署交易的 PIN。您需要银行提供的密钥名称和一次性设置码。",
	"Key name":      "密钥名称",
	"Setup code":    "设置码",
	"New PIN":       "新 PIN",
	"New PIN again": "再次输入新 PIN",
	"6 to 64 characters, letters, digits and punctuation; not one character repeated and not a simple sequence such as 123456.": "6 至 64 个字符，可用字母、数字和标点；不能是同一字符重复，也不能是 123456 这样的简单序列。",
	"Set PIN": "设置 PIN",

	// Results and messages (confirmpage.go, confirmserver.go).
	"This confirmation link is not valid or has expired":                                              "此确认链接无效或已过期",
	"Nothing was signed. If you are expecting a transaction, open the newest link the bank sent you.": "未签署任何内容。如果您在等待一笔交易，请打开银行发给您的最新链接。",
	"Approved — the transaction was signed":                                                           "已批准 — 交易已签署",
	"The bank's system has received the signature.":                                                   "银行系统已收到签名。",
	"Rejected — nothing was signed":                                                                   "已拒绝 — 未签署任何内容",
	"The request is cancelled.":                                                                       "该请求已取消。",
	"If you did not start this transaction, tell the bank.":                                           "如果这笔交易不是您发起的，请告知银行。",
	"The holder PIN is locked — contact the bank":                                                     "持有人 PIN 已锁定 — 请联系银行",
	"The holder PIN was entered wrongly too many times.":                                              "持有人 PIN 连续输错次数过多。",
	"Nothing was signed. Only the bank's security officer can unlock it; call the bank.":              "未签署任何内容。只有银行安全员可以解锁，请致电银行。",
	"What you approved does not match the transaction held — nothing was signed":                      "您批准的内容与系统保存的交易不一致 — 未签署任何内容",
	"What was approved is not the transaction keysvc holds.":                                          "所批准的内容不是系统保存的那笔交易。",
	"If you did not change anything, tell the bank: the transaction may have been altered.":           "如果您没有做任何更改，请告知银行：交易可能已被篡改。",
	"This confirmation has already ended":                                                             "此确认已经结束",
	"This confirmation has already ended (%s) — nothing was signed":                                   "此确认已经结束（%s）— 未签署任何内容",
	"An approval is used once.":                                                                       "批准只能使用一次。",
	"approved":                                                                                        "已批准",
	"rejected":                                                                                        "已拒绝",
	"expired":                                                                                         "已过期",
	"cancelled":                                                                                       "已撤回",
	"failed":                                                                                          "签署失败",
	"pending":                                                                                         "待确认",
	"The holder did not answer in time.":                                                              "持有人未在时限内回应。",
	"The requester withdrew the request.":                                                             "请求方已撤回此请求。",
	"The signature could not be made after the approval.":                                             "批准后未能完成签名。",
	"Something went wrong on our side — nothing was signed":                                           "我方系统出错 — 未签署任何内容",
	"Try again in a moment; if it happens again, contact the bank.":                                   "请稍后重试；如果再次发生，请联系银行。",
	"The request was refused — nothing was signed":                                                    "请求被拒绝 — 未签署任何内容",
	"Error code: %s.":                                                                                 "错误代码：%s。",
	"The form could not be read":                                                                      "无法读取表单",
	"This form must be sent from the confirmation page itself":                                        "此表单必须从确认页面本身提交",
	"Open the link you were sent and use its buttons.":                                                "请打开发给您的链接，并使用页面上的按钮。",
	"Send the page's form as it is (application/x-www-form-urlencoded).":                              "请按页面原样提交表单（application/x-www-form-urlencoded）。",
	"The key or the fingerprint shown is missing; open the link again.":                               "缺少密钥或指纹；请重新打开链接。",
	"Enter your holder PIN to approve.":                                                               "请输入持有人 PIN 以批准。",
	"Wrong PIN, nothing was signed (%s).":                                                             "PIN 错误，未签署任何内容；%s。",
	"%d of %d tries left before the holder is locked":                                                 "还可尝试 %d 次（共 %d 次），之后将被锁定",
	"Wrong PIN, nothing was signed.":                                                                  "PIN 错误，未签署任何内容。",
	`Choose "Approve" or "Reject".`:                                                                   "请选择“批准签署”或“拒绝”。",
	"The key name is not valid: use the name the bank gave you.":                                      "密钥名称无效：请使用银行提供的名称。",
	"Fill in the setup code and the new PIN twice.":                                                   "请填写设置码，并输入两次新 PIN。",
	"The two PINs are not the same; nothing was changed.":                                             "两次输入的 PIN 不一致；未做任何更改。",
	"Your holder PIN is set":                                                                          "您的持有人 PIN 已设置",
	"Key %s now asks for this PIN before it signs.":                                                   "密钥 %s 今后签署前将要求输入此 PIN。",
	"Keep the PIN to yourself; the bank will never ask for it.":                                       "请妥善保管 PIN，银行绝不会向您索要。",
	"Wrong setup code: %s.":                                                                           "设置码错误：%s。",
	"%d of %d tries left":                                                                             "还可尝试 %d 次（共 %d 次）",
	"Wrong setup code.":                                                                               "设置码错误。",
	"This PIN is not allowed: %s.":                                                                    "此 PIN 不符合规则：%s。",
	"it does not follow the PIN rules below":                                                          "不符合下方的 PIN 规则",
	"at least 6 characters":                                                                           "至少需要 6 个字符",
	"at most 64 characters":                                                                           "最多 64 个字符",
	"not one character repeated":                                                                      "不能是同一字符重复",
	"not a simple sequence such as 123456 or 654321":                                                  "不能是 123456 或 654321 这样的简单序列",
	"different from the old PIN":                                                                      "必须与旧 PIN 不同",
	"printable ASCII characters only":                                                                 "只能使用可打印的 ASCII 字符",
	"Too many enrolment attempts from this address; wait a minute and try again.":                     "此地址的设置尝试次数过多；请等待一分钟后重试。",
})

// pageLang is the language of a page: ?lang=zh or ?lang=en (the page's
// switch link, kept across the form post by the form's action) wins over
// Accept-Language; no preference gives the bank's default, Chinese.
func pageLang(c *fiber.Ctx) language.Tag {
	if q := c.Query("lang"); q != "" {
		if t, err := language.Parse(q); err == nil {
			return l10n.Match(t)
		}
	}
	return l10n.FromAcceptLanguage(c.Get(fiber.HeaderAcceptLanguage))
}

// tr is the text keyed key in the page's language, formatted with args.
func tr(c *fiber.Ctx, key string, args ...any) string {
	return pageTexts.Sprintf(pageLang(c), key, args...)
}

// txt is the text keyed key in the page's language, unformatted.
func txt(c *fiber.Ctx, key string) string { return pageTexts.Text(pageLang(c), key) }

// zh reports whether the page is shown in Chinese.
func zh(c *fiber.Ctx) bool { return l10n.IsChinese(pageLang(c)) }

// pageBase is what every page's template reads besides its own fields.
type pageBase struct {
	Lang  language.Tag
	Title string
}

// T is the text keyed key in the page's language ({{.T "Approve"}}).
func (p pageBase) T(key string) string { return pageTexts.Text(p.Lang, key) }

// HTMLLang is the page's <html lang>: zh-CN or en.
func (p pageBase) HTMLLang() string {
	if l10n.IsChinese(p.Lang) {
		return "zh-CN"
	}
	return "en"
}

// Code is the page's own ?lang= value, which the forms post back to
// (action="?lang=…"), so a holder who switched keeps their language.
func (p pageBase) Code() string {
	if l10n.IsChinese(p.Lang) {
		return "zh"
	}
	return "en"
}

// Switch is the ?lang= value of the other language, and SwitchName its
// name written in itself (a reader who cannot read the page's language
// still finds their own).
func (p pageBase) Switch() string {
	if l10n.IsChinese(p.Lang) {
		return "en"
	}
	return "zh"
}

// SwitchName: see Switch.
func (p pageBase) SwitchName() string {
	if l10n.IsChinese(p.Lang) {
		return "English"
	}
	return "中文"
}

// triesText says how many tries are left, from keysvc's typed count
// (wire.TriesLeft); without one, the English page relays keysvc's message
// and the Chinese page says nothing of a count.
func triesText(c *fiber.Ctx, err error, msg, key string) (string, bool) {
	var tl *wire.TriesLeft
	if errors.As(err, &tl) {
		return pageTexts.Sprintf(pageLang(c), key, tl.Left, tl.Limit), true
	}
	if zh(c) {
		return "", false
	}
	return msg, true
}

// pinRule names the PIN rule a refused PIN broke, in the page's language;
// keysvc keeps token's rule error in the chain.
func pinRule(c *fiber.Ctx, err error, msg string) string {
	if !zh(c) {
		return msg
	}
	for _, r := range []struct {
		err error
		key string
	}{
		{token.ErrPINTooShort, "at least 6 characters"},
		{token.ErrPINTooLong, "at most 64 characters"},
		{token.ErrPINRepeated, "not one character repeated"},
		{token.ErrPINSequence, "not a simple sequence such as 123456 or 654321"},
		{token.ErrPINReused, "different from the old PIN"},
		{token.ErrPINCharacters, "printable ASCII characters only"},
	} {
		if errors.Is(err, r.err) {
			return txt(c, r.key)
		}
	}
	return tr(c, "it does not follow the PIN rules below")
}

// statusName is a confirmation's status in the page's language (English:
// the status itself).
func statusName(c *fiber.Ctx, st wire.ConfirmationStatus) string {
	switch st {
	case wire.ConfirmApproved:
		return tr(c, "approved")
	case wire.ConfirmRejected:
		return tr(c, "rejected")
	case wire.ConfirmExpired:
		return tr(c, "expired")
	case wire.ConfirmCancelled:
		return tr(c, "cancelled")
	case wire.ConfirmFailed:
		return tr(c, "failed")
	case wire.ConfirmPending:
		return tr(c, "pending")
	}
	return string(st)
}

// endedReason is why a confirmation ended: keysvc's reason on the English
// page, a text by status on the Chinese one.
func endedReason(c *fiber.Ctx, v wire.ConfirmationView) string {
	if !zh(c) {
		return v.Reason
	}
	switch v.Status {
	case wire.ConfirmExpired:
		return tr(c, "The holder did not answer in time.")
	case wire.ConfirmCancelled:
		return tr(c, "The requester withdrew the request.")
	case wire.ConfirmFailed:
		return tr(c, "The signature could not be made after the approval.")
	}
	return ""
}
