package otp

import (
	"fmt"
	"time"
)

// SecurityNotice ends every SMS that carries a code (seed 6.4.3 b): the
// customer is told never to pass the code on, whoever asks, and that the
// bank never asks for it.
const SecurityNotice = "请勿向任何人（包括银行工作人员）透露验证码；银行不会以任何方式索要。"

// SMSSignature opens every text: the bank's name in 【】, as Chinese
// operators require of a sender.
const SMSSignature = "【Keyward银行】"

// purposeNames names each purpose in the SMS, so a customer who did not
// ask for, say, a payee to be added knows the code is not theirs to use.
var purposeNames = map[string]string{
	"login":    "登录确认",
	"stepup":   "敏感操作确认（修改密码、限额等）",
	"password": "修改登录密码",
	"limits":   "修改转账限额",
	"payee":    "添加收款人",
	"phone":    "更换预留手机号",
	"transfer": "转账确认",
	"device":   "设备管理",
}

// PurposeName is the Chinese name of a purpose in the SMS; a purpose not
// listed is "身份验证" (identity check).
func PurposeName(purpose string) string {
	if n, ok := purposeNames[purpose]; ok {
		return n
	}
	return "身份验证"
}

// Purposes returns the purposes PurposeName names.
func Purposes() []string {
	out := make([]string, 0, len(purposeNames))
	for p := range purposeNames {
		out = append(out, p)
	}
	return out
}

// DefaultMessage is the text sent when Config.Message is nil: the bank's
// signature, the code once, what it is for, how long it lives, and the
// security notice, in Chinese (the bank's customers read Chinese):
//
//	【Keyward银行】验证码 123456，用于登录确认，5分钟内有效。请勿向任何人（包括银行工作人员）透露验证码；银行不会以任何方式索要。
//
// The notice holds no six-digit run, so the code is the only one in the
// text (DevOutbox.LastCode and a customer's phone both pick it out).
func DefaultMessage(purpose, code string, ttl time.Duration) string {
	return fmt.Sprintf("%s验证码 %s，用于%s，%d分钟内有效。%s", SMSSignature, code, PurposeName(purpose), int(ttl.Minutes()), SecurityNotice)
}
