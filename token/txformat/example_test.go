package txformat_test

import (
	"errors"
	"fmt"

	"github.com/keyward/keyward/token/l10n"
	"github.com/keyward/keyward/token/txformat"
)

func ExampleRecognise() {
	data := []byte(`{"type":"keyward.transfer.v1","payer_account":"6222020200112233445",` +
		`"payee_account":"6222020012345678","payee_name":"李雷","payee_bank":"ICBC Beijing",` +
		`"amount":"1234.5","currency":"CNY","requested_at":"2026-03-02T09:30:00+08:00",` +
		`"nonce":"k7Qm2vX9pL4sT8wZ"}`)
	doc, err := txformat.Recognise(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, line := range doc.DisplayLines() {
		fmt.Println(line)
	}
	// Output:
	// Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing
	// From account 6222 0202 0011 2233 445
	// Execution requested for 2026-03-02T09:30:00+08:00
	// Reference: k7Qm2vX9pL4sT8wZ
	// Message: k7Qm2vX9pL4sT8wZ (keyward.transfer.v1)
}

func ExampleDocument_DisplayLinesIn() {
	data := []byte(`{"type":"keyward.transfer.v1","payer_account":"6222020200112233445",` +
		`"payee_account":"6222020012345678","payee_name":"李雷","payee_bank":"中国工商银行北京分行",` +
		`"amount":"1234.5","currency":"CNY","purpose":"货款","requested_at":"2026-03-02T09:30:00+08:00",` +
		`"nonce":"k7Qm2vX9pL4sT8wZ"}`)
	doc, err := txformat.Recognise(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, line := range doc.DisplayLinesIn(l10n.Chinese) {
		fmt.Println(line)
	}
	// Output:
	// 向 李雷（6222 0200 1234 5678，中国工商银行北京分行）支付 人民币 1,234.50
	// 大写：壹仟贰佰叁拾肆元伍角整
	// 付款账户 6222 0202 0011 2233 445
	// 用途：货款
	// 要求执行日期 2026-03-02T09:30:00+08:00
	// 参考号：k7Qm2vX9pL4sT8wZ
	// 报文 k7Qm2vX9pL4sT8wZ（keyward.transfer.v1）
}

func ExampleFieldError() {
	_, err := txformat.Recognise([]byte(`{"type":"keyward.transfer.v1","amount":"1e3"}`))
	var fe *txformat.FieldError
	if errors.Is(err, txformat.ErrInvalid) && errors.As(err, &fe) {
		fmt.Println(fe.Path)
		fmt.Println(err)
	}
	// Output:
	// payer_account
	// txformat: invalid document: payer_account: required field is missing
}
