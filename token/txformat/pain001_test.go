package txformat_test

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/txformat"
)

const (
	pTx1    = "Document/CstmrCdtTrfInitn/PmtInf[1]/CdtTrfTxInf[1]"
	pTx2    = "Document/CstmrCdtTrfInitn/PmtInf[1]/CdtTrfTxInf[2]"
	pPmt    = "Document/CstmrCdtTrfInitn/PmtInf[1]"
	pGrpHdr = "Document/CstmrCdtTrfInitn/GrpHdr"
)

func TestParsePain001Sample(t *testing.T) {
	got, err := txformat.ParsePain001([]byte(painSample))
	if err != nil {
		t.Fatal(err)
	}
	want := &txformat.Document{
		Format:    txformat.FormatPain001,
		MessageID: "MSG-20260302-0001",
		Requested: "2026-03-02",
		Transfers: []txformat.Transfer{{
			PayerAccount: "6222020200112233445",
			PayeeAccount: "6222 0200 1234 5678",
			PayeeName:    "李雷",
			PayeeBank:    "ICBC Beijing",
			Amount:       "1234.50",
			Currency:     "CNY",
			Purpose:      "货款 发票号 20260215",
			EndToEndID:   "E2E-20260302-0001",
		}, {
			PayerAccount: "6222020200112233445",
			PayeeAccount: "6217852000012345678",
			PayeeName:    "韩梅梅",
			PayeeBank:    "BKCHCNBJ110",
			Amount:       "5000.00",
			Currency:     "CNY",
			Purpose:      "服务费 2026年2月",
			EndToEndID:   "E2E-20260302-0002",
		}},
		Total: map[string]string{"CNY": "6234.50"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// tx builds one compact CdtTrfTxInf.
func tx(i int, amount, ccy string) string {
	return fmt.Sprintf(`<CdtTrfTxInf><PmtId><EndToEndId>E2E-%d</EndToEndId></PmtId>`+
		`<Amt><InstdAmt Ccy="%s">%s</InstdAmt></Amt>`+
		`<CdtrAgt><FinInstnId><BICFI>BKCHCNBJ110</BICFI></FinInstnId></CdtrAgt>`+
		`<Cdtr><Nm>收款人%d</Nm></Cdtr><CdtrAcct><Id><Othr><Id>62178520%06d</Id></Othr></Id></CdtrAcct></CdtTrfTxInf>`,
		i, ccy, amount, i, i)
}

// bulk builds a message with n transactions of 1.00 CNY each.
func bulk(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn>`+
		`<GrpHdr><MsgId>BULK</MsgId><CreDtTm>2026-03-01T16:30:00</CreDtTm><NbOfTxs>%d</NbOfTxs><CtrlSum>%d.00</CtrlSum><InitgPty/></GrpHdr>`+
		`<PmtInf><PmtInfId>P1</PmtInfId><PmtMtd>TRF</PmtMtd><ReqdExctnDt><Dt>2026-03-02</Dt></ReqdExctnDt><Dbtr/>`+
		`<DbtrAcct><Id><Othr><Id>6222020200112233445</Id></Othr></Id></DbtrAcct><DbtrAgt><FinInstnId><Nm>ICBC</Nm></FinInstnId></DbtrAgt>`, n, n)
	for i := 1; i <= n; i++ {
		b.WriteString(tx(i, "1.00", "CNY"))
	}
	b.WriteString(`</PmtInf></CstmrCdtTrfInitn></Document>`)
	return b.String()
}

// twoPmtInf repeats the sample's PmtInf, with the second block's
// ReqdExctnDt/Dt replaced by date, and fixes the group header to match.
func twoPmtInf(t testing.TB, date string) string {
	t.Helper()
	block := painSample[strings.Index(painSample, "<PmtInf>") : strings.Index(painSample, "</PmtInf>")+len("</PmtInf>")]
	block = replaceOnce(t, block, "<Dt>2026-03-02</Dt>", date)
	s := replaceOnce(t, painSample, "</PmtInf>", "</PmtInf>\n    "+block)
	s = replaceNth(t, s, "<NbOfTxs>2</NbOfTxs>", "<NbOfTxs>4</NbOfTxs>", 1)
	return replaceNth(t, s, "<CtrlSum>6234.50</CtrlSum>", "<CtrlSum>12469.00</CtrlSum>", 1)
}

// nested wraps inner in n <X> elements.
func nested(n int, inner string) string {
	return strings.Repeat("<X>", n) + inner + strings.Repeat("</X>", n)
}

func TestParsePain001Accepted(t *testing.T) {
	prefixed := regexp.MustCompile(`<(/?)([A-Za-z])`).ReplaceAllString(painSample, "<${1}p:${2}")
	prefixed = replaceOnce(t, prefixed, `xmlns="urn:`, `xmlns:p="urn:`)
	twoBlocks := twoPmtInf(t, "<Dt>2026-03-02</Dt>")

	tests := []struct {
		name  string
		input string
		check func(*txformat.Document) bool
	}{
		{"no XML declaration", painSample[strings.Index(painSample, "<Document"):],
			func(d *txformat.Document) bool { return len(d.Transfers) == 2 }},
		{"single-quoted declaration", replaceOnce(t, painSample, `<?xml version="1.0" encoding="UTF-8"?>`, `<?xml version='1.0' encoding='utf-8' standalone='yes'?>`),
			func(d *txformat.Document) bool { return len(d.Transfers) == 2 }},
		{"prefixed namespace", prefixed,
			func(d *txformat.Document) bool { return d.Transfers[1].PayeeName == "韩梅梅" }},
		{"predefined entity", replaceOnce(t, painSample, "<Nm>ICBC Beijing</Nm>", "<Nm>ICBC &amp; Co &lt;Beijing&gt;</Nm>"),
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeBank == "ICBC & Co <Beijing>" }},
		{"numeric character reference", replaceOnce(t, painSample, "<Nm>李雷</Nm>", "<Nm>&#26446;&#x96F7;</Nm>"),
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeName == "李雷" }},
		{"whole value in CDATA", replaceOnce(t, painSample, "<Nm>李雷</Nm>", "<Nm><![CDATA[李雷]]></Nm>"),
			func(d *txformat.Document) bool { return d.Transfers[0].PayeeName == "李雷" }},
		{"control sums equal in value", strings.ReplaceAll(painSample, "<CtrlSum>6234.50</CtrlSum>", "<CtrlSum>6234.5000</CtrlSum>"),
			func(d *txformat.Document) bool { return d.Total["CNY"] == "6234.50" }},
		{"no control sums", strings.ReplaceAll(painSample, "<CtrlSum>6234.50</CtrlSum>", ""),
			func(d *txformat.Document) bool { return d.Total["CNY"] == "6234.50" }},
		{"IBAN accounts", replaceOnce(t, painSample, "<Othr>\n              <Id>6217852000012345678</Id>\n            </Othr>", "<IBAN>GB82WEST12345698765432</IBAN>"),
			func(d *txformat.Document) bool { return d.Transfers[1].PayeeAccount == "GB82WEST12345698765432" }},
		{"account trimmed", replaceOnce(t, painSample, "<Id>6217852000012345678</Id>", "<Id> 6217852000012345678 </Id>"),
			func(d *txformat.Document) bool { return d.Transfers[1].PayeeAccount == "6217852000012345678" }},
		{"execution date-time", replaceOnce(t, painSample, "<Dt>2026-03-02</Dt>", "<DtTm>2026-03-02T09:00:00.5</DtTm>"),
			func(d *txformat.Document) bool { return d.Requested == "2026-03-02T09:00:00.5" }},
		{"mixed currencies", strings.ReplaceAll(replaceOnce(t, painSample, `<InstdAmt Ccy="CNY">5000.00</InstdAmt>`, `<InstdAmt Ccy="USD">20</InstdAmt>`), "6234.50", "1254.5"),
			func(d *txformat.Document) bool {
				return reflect.DeepEqual(d.Total, map[string]string{"CNY": "1234.50", "USD": "20.00"})
			}},
		{"two payment blocks with the same date", twoBlocks,
			func(d *txformat.Document) bool {
				return len(d.Transfers) == 4 && d.Total["CNY"] == "12469.00" && d.Transfers[3].PayeeName == "韩梅梅"
			}},
		{"exactly 1000 transactions", bulk(txformat.MaxTransfers),
			func(d *txformat.Document) bool { return len(d.Transfers) == 1000 && d.Total["CNY"] == "1000.00" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.ParsePain001([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(d) {
				t.Errorf("unexpected document %+v", d)
			}
		})
	}
}
