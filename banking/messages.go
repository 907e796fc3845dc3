package banking

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/text/language"

	"github.com/keyward/keyward/banking/auth/bruteforce"
	"github.com/keyward/keyward/banking/auth/otp"
	"github.com/keyward/keyward/banking/auth/password"
	"github.com/keyward/keyward/banking/ledger"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
	"github.com/keyward/keyward/token/l10n"
)

// Banking's messages in the reader's language (issue 18 item 1).
//
// A client reads the error code (stable, never translated); a person
// reads the message, which follows the request's Accept-Language:
// Simplified Chinese by default (the bank's customers), English on
// request ("Accept-Language: en"). The English text is the one the code
// wrote (errors wrap a sentinel with fmt.Errorf("%w: detail")); the
// Chinese is found in this order:
//
//  1. typed errors carrying their arguments (a login lock's end, the
//     attempts left on an SMS code, a transfer limit, the password rules
//     broken) are written from those arguments;
//  2. the whole English message, when the catalogue has it (fixed
//     messages, the edge's own refusals);
//  3. the code's Chinese text, then "：" and the Chinese of the detail
//     after the sentinel's text, when the catalogue has it — details
//     with values ("order %s is %s") match the catalogue's English
//     format and keep their values;
//  4. otherwise the code's Chinese text with the English detail in
//     （）, so nothing the customer could act on is lost.
//
// Every code banking can send has a Chinese text (codeText; a test walks
// errorTable, the ledger's codes and the edge's own), and the validation
// messages customers commonly get have one in texts (a test drives them).

// codeText is the Chinese of every code banking's clients can see.
var codeText = map[string]string{
	// banking's table
	"staff_credential_expired": "员工凭证已过期，请联系管理员重新签发",
	"staff_role_required":      "您的员工凭证没有办理此业务所需的角色",
	"invalid_request":          "请求无效",
	"unauthenticated":          "未登录或会话已结束，请重新登录",
	"session_expired":          "会话已超时，请重新登录",
	"login_failed":             "登录名或密码错误",
	"temporarily_locked":       "登录失败次数过多，已暂时锁定",
	"challenge_used":           "登录挑战码已使用，请重新获取",
	"challenge_expired":        "登录挑战码已过期，请重新获取",
	"challenge_unknown":        "登录挑战码无效，请重新获取",
	"challenge_mismatch":       "加密的登录数据与挑战码不符",
	"step_up_required":         "此操作需要短信验证码确认",
	"otp_invalid":              "短信验证码错误",
	"otp_locked":               "短信验证码错误次数过多，已作废，请重新获取",
	"otp_expired":              "短信验证码已过期，请重新获取",
	"otp_used":                 "短信验证码已使用，请重新获取",
	"otp_not_found":            "尚未发送短信验证码，请先获取",
	"otp_format":               "短信验证码为 6 位数字",
	"otp_rate_limited":         "获取短信验证码过于频繁，请稍后再试",
	"maker_checker_required":   "企业账户转账须经录入、复核、授权三人办理",
	"forbidden":                "无权进行此操作",
	"not_found":                "未找到",
	"exists":                   "已存在",
	"order_mismatch":           "转账指令不符",
	"signature_invalid":        "指令签名无效",
	"customer_blocked":         "开户被拒绝：客户在本行的风险名单上",
	"payee_blocked":            "转账被拒绝：收款人或账户在本行的风险名单上",
	"unavailable":              "服务暂时不可用，请稍后再试",
	"captcha_required":         "登录失败次数较多，请先输入图片验证码",
	"captcha_invalid":          "图片验证码错误或已失效，请重新获取",
	// the ledger's (ledger.ErrorCodes) and its fallback
	"limit_exceeded":       "超过转账限额",
	"invalid_amount":       "金额无效",
	"unknown_currency":     "不支持的币种",
	"invalid_argument":     "参数无效",
	"account_not_found":    "账户不存在",
	"account_exists":       "账户已存在",
	"account_frozen":       "账户已冻结",
	"account_closed":       "账户已销户",
	"illegal_transition":   "账户状态不允许此变更",
	"currency_mismatch":    "币种不符",
	"same_account":         "付款账户与收款账户相同",
	"insufficient_funds":   "余额不足",
	"idempotency_conflict": "此幂等键已用于另一笔不同的请求",
	"blocked":              "账户在本行的风险名单上",
	"transfer_not_found":   "转账不存在",
	"ledger_corrupt":       "账务数据异常，已记录，请联系本行",
	"ledger_unavailable":   "账务系统暂时不可用，请稍后再试",
	"ledger_refused":       "账务系统拒绝了此请求",
	// the edge's own (httpedge) and the rate limiter's
	httpedge.CodeInternal:         "内部错误，已记录，请稍后再试或联系本行",
	httpedge.CodeInvalidJSON:      "请求内容不是有效的 JSON",
	httpedge.CodeUnknownField:     "请求含有未知字段",
	httpedge.CodeBodyTooLarge:     "请求内容过大",
	httpedge.CodeUnsupportedMedia: "不支持的内容类型，请发送 application/json",
	httpedge.CodeMethodNotAllowed: "此地址不支持该请求方法",
	httpedge.CodeBadRequest:       "HTTP 请求格式错误",
	httpedge.CodeRequestTimeout:   "请求未能及时收到",
	httpedge.CodeHeadersTooLarge:  "请求头过大",
	httpedge.CodeRateLimited:      "请求过于频繁，请一分钟后再试",
}

// lockKey is the login lock's message (the staff branch's wording, issue
// 18 item 6), args l10n.Clock(until, lang) and the failures counted.
const lockKey = "login locked until %s after %d failed attempts; a teller at a branch can lift the lock after checking your identity"

// texts are the Chinese of whole messages and of details, keyed by the
// English text or format (%s, %d, %q, %v keep the value; in the Chinese
// a %q value is shown with 「」).
var texts = l10n.NewCatalog(map[string]string{
	// whole messages
	msgStoreUnavailable:                       "暂时无法访问本行的数据，请稍后再试（同一笔指令再次提交绝不会重复入账）",
	msgPayeeBlocked:                           "转账被拒绝：收款人或账户在本行的风险名单上",
	msgStaffToken:                             "此员工凭证无效；请以 Authorization: Bearer 发送您本人的个人凭证（kwst_…）",
	msgCustomerBlocked:                        "开户被拒绝：客户在本行的风险名单上",
	httpedge.MsgInternal:                      "内部错误，已记录，请稍后再试或联系本行",
	"no such route":                           "没有此地址",
	"malformed HTTP request":                  "HTTP 请求格式错误",
	"unsupported media type":                  "不支持的内容类型",
	"request body exceeds the server's limit": "请求内容超过服务器的限制",
	"request headers are too large":           "请求头过大",
	"request not received in time":            "未能及时收到请求",
	"method not allowed on this route":        "此地址不支持该请求方法",
	"too many requests; slow down and try again in a minute":          "请求过于频繁，请一分钟后再试",
	"otp: wrong code (%d more attempts before the code is cancelled)": "短信验证码错误（再错 %d 次此验证码即作废）",
	lockKey: "登录已锁定至 %s（连续 %d 次登录失败）；可携带身份证件到柜台，由柜员核实身份后解除锁定",
	"captcha: a captcha is required after repeated failed logins; fetch one from GET /v1/login/captcha": "登录失败次数较多，请先获取图片验证码（GET /v1/login/captcha）并随登录一起提交",
	"captcha: wrong captcha; fetch a new one":                                                           "图片验证码输入错误，请重新获取",
	"captcha: the captcha has expired; fetch a new one":                                                 "图片验证码已过期，请重新获取",
	"captcha: no such captcha, or it was already used; fetch a new one":                                 "图片验证码不存在或已使用，请重新获取",
	"captcha: a captcha answer is its digits":                                                           "图片验证码由数字组成",
	// details (after the sentinel's text)
	"login, device (≤64) and os (≤64) are required":                                   "登录名、设备标识（不超过 64 个字符）和操作系统（不超过 64 个字符）均为必填项",
	"login must be 4-32 of a-z 0-9 _ . - starting with a letter":                      "登录名须为 4-32 个字符（a-z、0-9、_、.、-），以字母开头",
	"name must be 1-64 characters without < > \" ' & or line breaks":                  "姓名须为 1-64 个字符，不能含有 < > \" ' & 或换行",
	"phone must be an 11-digit mainland mobile number":                                "手机号须为 11 位中国大陆手机号码",
	"anti_phishing must be 2-32 characters of your choice, shown at every login":      "预留防伪信息须为 2-32 个字符，由您自定，每次登录时显示",
	"usb_algorithm must be ec-p256 or sm2":                                            "USB Key 算法须为 ec-p256 或 sm2",
	"corporate and role go together":                                                  "企业编号与角色须同时填写",
	"corporate must be 3-32 of a-z 0-9 -":                                             "企业编号须为 3-32 个字符（a-z、0-9、-）",
	"role must be admin, maker, reviewer or authoriser":                               "角色须为 admin（管理员）、maker（录入）、reviewer（复核）或 authoriser（授权）",
	"password needs challenge, ciphertext and key_version":                            "密码须包含 challenge、ciphertext 和 key_version",
	"the encrypted password could not be opened; encrypt it to the current login key": "加密的密码无法解开，请用本行当前的登录公钥重新加密",
	"login %q is taken":                      "登录名「%s」已被占用",
	"customer":                               "客户",
	"order %s":                               "指令 %s",
	"account %s":                             "账户 %s",
	"transfer %s":                            "转账 %s",
	"pending transfer %q":                    "待确认转账「%s」",
	"send Authorization: Bearer <session>":   "请在 Authorization 头中携带 Bearer <会话>",
	"staff token required":                   "需要柜员凭证",
	"this session belongs to another device": "此会话属于另一台设备",
	"this login is from a new device or network; enter the SMS code first": "本次登录来自新的设备或网络，请先输入短信验证码",
	"the key service cannot be reached; try again shortly":                 "暂时无法连接密钥服务，请稍后再试",
	"this needs a corporate %s":                                            "此操作需要企业%s角色",
	"order %s is %s, not waiting for review":                               "指令 %s 的状态为 %s，不在待复核状态",
	"the maker may not review their own order":                             "录入人不能复核自己录入的指令",
	"order %s is %s; it needs a review before authorisation":               "指令 %s 的状态为 %s，须先复核才能授权",
	"entry, review and authorisation need three different people":          "录入、复核和授权须由三位不同的人员办理",
	"order %s is %s":           "指令 %s 的状态为 %s",
	"corporate operators only": "仅限企业操作员",
	"only the corporate administrator changes the company's limits":                                                       "只有企业管理员可以修改企业的限额",
	"an order carries exactly one transfer; this one has %d":                                                              "一笔指令只能包含一笔转账，此指令包含 %d 笔",
	"the payer account is not one of yours":                                                                               "付款账户不是您的账户",
	"currency %s does not match the accounts":                                                                             "币种 %s 与账户币种不符",
	"the payee account and name do not match an account of this bank":                                                     "收款账号与户名不符，或不是本行账户",
	"a corporate account's transfers are entered, reviewed and authorised by three operators (POST /v1/corporate/orders)": "企业账户的转账须由三位操作员分别录入、复核和授权（POST /v1/corporate/orders）",
	"no USB key is registered for you":                                                                                    "您尚未登记 USB Key",
	"the signature does not match the order and your USB key":                                                             "签名与指令或您的 USB Key 不符",
	"signature must be base64 DER":                                                                                        "签名须为 base64 编码的 DER",
	"you have no cloud signing key":                                                                                       "您没有云签名密钥",
	"another transfer is waiting for your confirmation; confirm or reject it first":                                       "另一笔转账正在等待您确认，请先确认或拒绝该笔转账",
	"keysvc signed other bytes than the order":                                                                            "密钥服务签名的内容与指令不符",
	"the cloud signature does not verify":                                                                                 "云签名验证失败",
	`"wait" must be a duration from 0s to 30s`:                                                                            "wait 须为 0s 至 30s 之间的时长",
	"the customer's name is on the screening list":                                                                        "客户姓名在本行的风险名单上",
	"the payee is on the screening list; the transfer is refused":                                                         "收款人在本行的风险名单上，转账被拒绝",
	"limit must be a number from 1 to %d":                                                                                 "limit 须为 1 至 %d 之间的数字",
	"id and created are set by the bank":                                                                                  "id 和 created 由银行设定，请勿提交",
	"send Authorization: Bearer <your personal staff token>":                                                              "请以 Authorization: Bearer <您的个人员工凭证> 发送请求",
	"device_name is at most %d characters, without control characters":                                                    "device_name 最多 %d 个字符，且不得含控制字符",
	"you have no account %q":                                                                                              "您没有账户 %q",
	"limit must be 1 to %d":                                                                                               "limit 须为 1 至 %d",
	"before is not a cursor of this account's history (take next from the previous page, or leave before out for the newest)": "before 不是此账户交易明细的翻页标记（请使用上一页返回的 next，或不填以查看最新记录）",
	"the payee is on the screening list; it cannot be saved":                                                                  "收款人在本行的风险名单上，不能保存",
	"you have no saved payee of that id":                                                                                      "您没有该编号的常用收款人",
	"no device %q (a ref is the 16 hex digits GET /v1/devices shows)":                                                         "没有设备 %q（设备编号为 GET /v1/devices 显示的 16 位十六进制数）",
	"no device %q": "没有设备 %q",
	"message must be 1 to %d characters (%d given); a Chinese character counts as one":                                 "预留信息须为 1 至 %d 个字符（当前 %d 个）；一个汉字算一个字符",
	"message must not hold line breaks, control or formatting characters, or any of < > \" ' &":                        "预留信息不得含换行、控制或格式字符，也不得含 < > \" ' & 中的任何字符",
	"customer id must be c and 12 digits (as enrolment returned it)":                                                   "客户号须为 c 加 12 位数字（开户时返回的客户号）",
	"this act needs the staff role %q, which your credential does not have; ask a colleague who holds it":              "办理此业务需要员工角色 %q，您的凭证没有该角色；请由具备该角色的同事办理",
	"this account is already saved (as %q)":                                                                            "此账号已保存为常用收款人（编号 %q）",
	"identity_checked must be one line":                                                                                "identity_checked 只能是一行",
	"identity_checked is required: say how you checked the customer's identity, e.g. \"resident ID card ending 002X\"": "必须填写 identity_checked：说明如何核实客户身份，例如“居民身份证尾号 002X”",
	"identity_checked must be at most %d characters: the document type and its last 4 characters":                      "identity_checked 最多 %d 个字符：证件类型及其最后 4 位",
	"identity_checked must not hold the document's number: give its type and last 4 characters only":                   "identity_checked 不得包含证件号码：只填证件类型及最后 4 位",
	"%s is already the customer's registered number":                                                                   "%s 已是客户登记的手机号码",
	"reason is required: one line of at most %d characters saying why the customer needs these limits":                 "必须填写 reason：用一行（最多 %d 个字符）说明客户为何需要这些限额",
})

// weakText is the Chinese of each password rule (password.Rule*).
var weakText = map[string]string{
	password.RuleLength:     "密码须为 8-64 个字符。",
	password.RuleCharacters: "密码只能使用字母、数字、空格和标准键盘上的符号（不能使用中文、全角或控制字符）。",
	password.RuleClasses:    "密码须包含小写字母、大写字母、数字、符号中的至少三类。",
	password.RulePersonal:   "不能使用客户号、手机号、身份证号、出生日期或其中任何一个的后六位。",
	password.RuleCommon:     "此密码过于常见（常用密码，或只在其后添加了数字或符号），请换一个不易猜到的密码。",
}

// formats are texts' keys with verbs, as anchored patterns.
var formats = compileFormats(texts.Keys())

type format struct {
	key   string
	re    *regexp.Regexp
	verbs []byte
}

var verbRE = regexp.MustCompile(`%[sdqv]`)

func compileFormats(keys []string) []format {
	var out []format
	for _, k := range keys {
		locs := verbRE.FindAllStringIndex(k, -1)
		if locs == nil {
			continue
		}
		var b strings.Builder
		f := format{key: k}
		b.WriteString("^")
		last := 0
		for _, l := range locs {
			b.WriteString(regexp.QuoteMeta(k[last:l[0]]))
			v := k[l[0]+1]
			f.verbs = append(f.verbs, v)
			switch v {
			case 'd':
				b.WriteString(`(-?[0-9]+)`)
			case 'q':
				b.WriteString(`("(?:[^"\\]|\\.)*")`)
			default:
				// Any text but ": ", which joins a message to its detail:
				// "order %s" must not take "order signature invalid: …".
				b.WriteString(`((?:[^:]|:[^ ])+?)`)
			}
			last = l[1]
		}
		b.WriteString(regexp.QuoteMeta(k[last:]) + "$")
		f.re = regexp.MustCompile(b.String())
		out = append(out, f)
	}
	// The most specific format first: "order %s is %s" before "order %s".
	sort.SliceStable(out, func(i, j int) bool {
		return len(verbRE.ReplaceAllString(out[i].key, "")) > len(verbRE.ReplaceAllString(out[j].key, ""))
	})
	return out
}

// zhText returns the Chinese of an English message or detail, exact or
// by format, and whether the catalogue has it.
func zhText(en string) (string, bool) {
	if zh := texts.Text(l10n.Chinese, en); zh != en {
		return zh, true
	}
	for _, f := range formats {
		m := f.re.FindStringSubmatch(en)
		if m == nil {
			continue
		}
		args := make([]any, len(f.verbs))
		for i, v := range f.verbs {
			s := m[i+1]
			switch v {
			case 'd':
				n, _ := strconv.Atoi(s)
				args[i] = n
			case 'q':
				if u, err := strconv.Unquote(s); err == nil {
					s = u
				}
				args[i] = s
			default:
				args[i] = s
			}
		}
		return texts.Sprintf(l10n.Chinese, f.key, args...), true
	}
	return "", false
}

// withLanguage puts the reader's language (Accept-Language; Chinese by
// default) in the request and sets Content-Language on every answer.
func withLanguage(c *fiber.Ctx) error {
	lang := l10n.FromAcceptLanguage(c.Get(fiber.HeaderAcceptLanguage))
	c.Locals(langKey, lang)
	c.Set(fiber.HeaderContentLanguage, contentLanguage(lang))
	return c.Next()
}

const langKey = "banking.lang"

// readerLang is the language withLanguage found (Default before it ran).
func readerLang(c *fiber.Ctx) language.Tag {
	if t, ok := c.Locals(langKey).(language.Tag); ok {
		return t
	}
	return l10n.FromAcceptLanguage(c.Get(fiber.HeaderAcceptLanguage))
}

// localize is banking's httpedge.Config.Localize: the message of an error
// answer in the reader's language.
func localize(c *fiber.Ctx, err error, p httpedge.Problem) string {
	lang := readerLang(c)
	c.Set(fiber.HeaderContentLanguage, contentLanguage(lang))
	return message(lang, err, p)
}

// contentLanguage names lang as the bank's readers know it: zh-CN or en.
func contentLanguage(lang language.Tag) string {
	if l10n.IsChinese(lang) {
		return "zh-CN"
	}
	return "en"
}

// message writes p's message in lang (see the comment at the top).
func message(lang language.Tag, err error, p httpedge.Problem) string {
	if !l10n.IsChinese(lang) {
		return p.Message
	}
	if p.Internal {
		return codeText[httpedge.CodeInternal]
	}
	if zh, ok := typedZH(err, p); ok {
		return zh
	}
	if zh, ok := zhText(p.Message); ok {
		return zh
	}
	code, ok := codeText[p.Code]
	if !ok {
		return p.Message
	}
	detail := p.Message
	if row, ok := errorTable.Lookup(err); ok && row.Message == "" {
		s := row.Err.Error()
		if detail == s {
			return code
		}
		detail = strings.TrimPrefix(detail, s+": ")
	}
	if zh, ok := zhText(detail); ok {
		return code + "：" + zh
	}
	return code + "（" + detail + "）"
}

// typedZH writes the errors that carry their arguments.
func typedZH(err error, p httpedge.Problem) (string, bool) {
	var (
		le *bruteforce.LockedError
		oi *otp.InvalidError
		rl *otp.RateLimitedError
		li *ledger.LimitError
		we *password.WeakError
	)
	zh := l10n.Chinese
	switch {
	case errors.As(err, &le):
		if m := lockRE.FindStringSubmatch(p.Message); m != nil {
			n, _ := strconv.Atoi(m[1])
			return texts.Sprintf(zh, lockKey, l10n.Clock(le.Until, zh), n), true
		}
		if le.Scope == bruteforce.ScopeIP {
			return fmt.Sprintf("此网络地址登录失败次数过多，已暂时锁定至 %s", l10n.Clock(le.Until, zh)), true
		}
		return fmt.Sprintf("登录失败次数过多，已暂时锁定至 %s；可携带身份证件到柜台，由柜员核实身份后解除锁定", l10n.Clock(le.Until, zh)), true
	case errors.As(err, &oi):
		return texts.Sprintf(zh, "otp: wrong code (%d more attempts before the code is cancelled)", oi.Remaining), true
	case errors.As(err, &rl):
		return fmt.Sprintf("获取短信验证码过于频繁，请 %s 后再试", zhDuration(rl.RetryAfter)), true
	case errors.As(err, &li):
		amt := func(v int64) string { return l10n.Amount(ledger.FormatAmount(v, li.Currency), li.Currency, zh) }
		if li.Kind == ledger.LimitDaily {
			return fmt.Sprintf("超过转账限额：账户 %s 的日累计限额为 %s，今日已转出 %s，在 %s 之前最多还可转出 %s；本次转账 %s",
				li.Account, amt(li.Limit), amt(li.UsedToday), l10n.Time(li.ResetsAt, zh), amt(li.Remaining), amt(li.Requested)), true
		}
		return fmt.Sprintf("超过转账限额：账户 %s 的单笔限额为 %s，本次转账 %s（可分笔转账，或重新验证身份后提高限额）",
			li.Account, amt(li.Limit), amt(li.Requested)), true
	case errors.As(err, &we):
		var b strings.Builder
		b.WriteString("密码不符合规则：")
		for _, pr := range we.Problems {
			if t, ok := weakText[pr.Rule]; ok {
				b.WriteString(t)
			} else {
				b.WriteString(pr.Message)
			}
		}
		return b.String(), true
	}
	return "", false
}

// lockRE finds the failure count in the lock message (lockKey).
var lockRE = regexp.MustCompile(`^login locked until .+ after ([0-9]+) failed attempts;`)

// zhDuration is a wait in Chinese: "3 分钟", "45 秒".
func zhDuration(d time.Duration) string {
	if d >= time.Minute {
		return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " 分钟"
	}
	return strconv.Itoa(int((d+time.Second-1)/time.Second)) + " 秒"
}
