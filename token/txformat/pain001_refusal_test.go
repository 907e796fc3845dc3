package txformat_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/txformat"
)

// Exact fragments of testdata/pain001_sample.xml used by the mutations.
const (
	decl     = `<?xml version="1.0" encoding="UTF-8"?>`
	xmlnsDoc = `xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"`
	amt1     = `<InstdAmt Ccy="CNY">1234.50</InstdAmt>`
	nm1      = `<Nm>李雷</Nm>`
	cdtr1    = "<Cdtr>\n          <Nm>李雷</Nm>\n        </Cdtr>"
	cdtrAgt1 = "<CdtrAgt>\n          <FinInstnId>\n            <Nm>ICBC Beijing</Nm>\n          </FinInstnId>\n        </CdtrAgt>"
	dbtr     = "<Dbtr>\n        <Nm>北京星河贸易有限公司</Nm>\n      </Dbtr>"
	othr2    = "<Othr>\n              <Id>6217852000012345678</Id>\n            </Othr>"
)

func billionLaughs(t testing.TB) string {
	var dtd strings.Builder
	dtd.WriteString(`<!DOCTYPE Document [<!ENTITY lol "lol">`)
	prev := "lol"
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&dtd, `<!ENTITY lol%d "%s">`, i, strings.Repeat("&"+prev+";", 10))
		prev = fmt.Sprintf("lol%d", i)
	}
	dtd.WriteString("]>")
	s := replaceOnce(t, painSample, decl, decl+"\n"+dtd.String())
	return replaceOnce(t, s, nm1, "<Nm>&lol9;</Nm>")
}

func TestParsePain001Refusals(t *testing.T) {
	amt := func(v string) string { return replaceOnce(t, painSample, amt1, `<InstdAmt Ccy="CNY">`+v+`</InstdAmt>`) }
	name := func(v string) string { return replaceOnce(t, painSample, nm1, "<Nm>"+v+"</Nm>") }
	dbtrX := func(n int) string { return replaceOnce(t, painSample, dbtr, "<Dbtr>"+nested(n, "")+"</Dbtr>") }
	xs := func(n int) string { return strings.Repeat("/X", n) }

	tests := []struct {
		name, input, path, reason string
	}{
		// Markup that can expand, fetch or hide content.
		{"DOCTYPE with entity", replaceOnce(t, painSample, decl, decl+`<!DOCTYPE Document [<!ENTITY a "x">]>`), "", "DOCTYPE (DTD) declarations are not allowed"},
		{"billion laughs", billionLaughs(t), "", "billion laughs"},
		{"external DTD", replaceOnce(t, painSample, decl, decl+`<!DOCTYPE Document SYSTEM "http://attacker.example/x.dtd">`), "", "DOCTYPE"},
		{"undeclared entity", name("&lol;"), "", "invalid character entity &lol;"},
		{"entity declaration outside DTD", replaceOnce(t, painSample, decl, decl+`<!ENTITY a "x">`), "", "markup declaration"},
		{"processing instruction", replaceOnce(t, painSample, decl, decl+`<?xml-stylesheet type="text/xsl" href="x.xsl"?>`), "", "processing instruction <?xml-stylesheet"},
		{"processing instruction inside", replaceNth(t, painSample, "<Cdtr>", "<Cdtr><?php x?>", 1), pTx1 + "/Cdtr", "processing instruction <?php"},
		{"declaration not first", " " + painSample, "", "XML declaration may appear only at the very start"},
		{"declaration repeated", replaceOnce(t, painSample, "<Document", decl+"<Document"), "", "XML declaration may appear only"},
		{"GBK encoding", replaceOnce(t, painSample, `encoding="UTF-8"`, `encoding="GBK"`), "", `encoding "GBK"; only UTF-8`},
		{"Latin-1 encoding", replaceOnce(t, painSample, `encoding="UTF-8"`, `encoding="ISO-8859-1"`), "", `encoding "ISO-8859-1"`},
		{"XML 1.1", replaceOnce(t, painSample, `version="1.0"`, `version="1.1"`), "", "malformed XML declaration"},
		{"comment in value", name("李<!---->雷"), pTx1 + "/Cdtr/Nm", "XML comments are not allowed"},
		{"comment at top", replaceOnce(t, painSample, decl, decl+"<!-- generated -->"), "", "XML comments are not allowed"},
		{"CDATA splits value", name("李<![CDATA[雷]]>"), pTx1 + "/Cdtr/Nm", "split into several parts"},

		// Namespace and root.
		{"wrong namespace", replaceOnce(t, painSample, xmlnsDoc, `xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"`), "Document", "root element must be in namespace urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"},
		{"no namespace", replaceOnce(t, painSample, xmlnsDoc, ""), "Document", `is in ""`},
		{"element in foreign namespace", replaceOnce(t, painSample, nm1, `<Nm xmlns="urn:example:other">李雷</Nm>`), pTx1 + "/Cdtr/Nm", `element is in namespace "urn:example:other"`},
		{"wrong root", strings.ReplaceAll(strings.ReplaceAll(painSample, "<Document ", "<Doc "), "</Document>", "</Doc>"), "Doc", "root element must be Document"},
		{"second root", painSample + `<Document ` + xmlnsDoc + `/>`, "Document", "second root element"},
		{"text after root", painSample + "x", "", "text outside the root element"},

		// Counts and sums.
		{"GrpHdr NbOfTxs mismatch", replaceNth(t, painSample, "<NbOfTxs>2</NbOfTxs>", "<NbOfTxs>3</NbOfTxs>", 1), pGrpHdr + "/NbOfTxs", "is 3 but there are 2 CdtTrfTxInf"},
		{"PmtInf NbOfTxs mismatch", replaceNth(t, painSample, "<NbOfTxs>2</NbOfTxs>", "<NbOfTxs>1</NbOfTxs>", 2), pPmt + "/NbOfTxs", "is 1 but there are 2 CdtTrfTxInf"},
		{"GrpHdr CtrlSum mismatch", replaceNth(t, painSample, "<CtrlSum>6234.50</CtrlSum>", "<CtrlSum>6234.49</CtrlSum>", 1), pGrpHdr + "/CtrlSum", "is 6234.49 but the amounts add up to 6234.500"},
		{"PmtInf CtrlSum mismatch", replaceNth(t, painSample, "<CtrlSum>6234.50</CtrlSum>", "<CtrlSum>1234.50</CtrlSum>", 2), pPmt + "/CtrlSum", "is 1234.50 but the amounts add up to 6234.500"},
		{"NbOfTxs not numeric", replaceNth(t, painSample, "<NbOfTxs>2</NbOfTxs>", "<NbOfTxs>two</NbOfTxs>", 1), pGrpHdr + "/NbOfTxs", "1 to 15 digits"},
		{"CtrlSum not decimal", replaceNth(t, painSample, "<CtrlSum>6234.50</CtrlSum>", "<CtrlSum>6.2345e3</CtrlSum>", 1), pGrpHdr + "/CtrlSum", "plain decimal"},
		{"1001 transactions", bulk(txformat.MaxTransfers + 1), pPmt + "/CdtTrfTxInf[1001]", "more than 1000 transactions"},
		{"over 1 MiB", painSample + strings.Repeat("\n", txformat.MaxDocumentSize), "", "larger than the 1048576-byte limit"},

		// Shape.
		{"two InstdAmt", replaceOnce(t, painSample, amt1, amt1+`<InstdAmt Ccy="CNY">1.00</InstdAmt>`), pTx1 + "/Amt/InstdAmt", "appears more than once"},
		{"two creditor names", replaceOnce(t, painSample, nm1, nm1+"<Nm>韩梅梅</Nm>"), pTx1 + "/Cdtr/Nm", "appears more than once"},
		{"two MsgId", replaceOnce(t, painSample, "<MsgId>MSG-20260302-0001</MsgId>", "<MsgId>A</MsgId><MsgId>B</MsgId>"), pGrpHdr + "/MsgId", "appears more than once"},
		{"two Ustrd", replaceOnce(t, painSample, "<Ustrd>货款 发票号 20260215</Ustrd>", "<Ustrd>货款</Ustrd><Ustrd>发票号 20260215</Ustrd>"), pTx1 + "/RmtInf/Ustrd", "appears more than once"},
		{"unknown element UltmtCdtr", replaceOnce(t, painSample, cdtr1, cdtr1+"<UltmtCdtr><Nm>Mallory</Nm></UltmtCdtr>"), pTx1 + "/UltmtCdtr", "unknown or unsupported element"},
		{"equivalent amount", replaceOnce(t, painSample, amt1, `<EqvtAmt><Amt Ccy="USD">170</Amt><CcyOfTrf>CNY</CcyOfTrf></EqvtAmt>`), pTx1 + "/Amt/EqvtAmt", "Amt may contain only InstdAmt"},
		{"unknown element in GrpHdr", replaceOnce(t, painSample, "<NbOfTxs>2</NbOfTxs>\n      <CtrlSum>6234.50</CtrlSum>\n      <InitgPty>", "<Authstn><Cd>AUTH</Cd></Authstn><NbOfTxs>2</NbOfTxs><CtrlSum>6234.50</CtrlSum><InitgPty>"), pGrpHdr + "/Authstn", "unknown or unsupported element"},
		{"nesting 33 deep", dbtrX(40), pPmt + "/Dbtr" + xs(29), "nested more than 32 deep"},
		{"nesting 32 deep is only unknown", dbtrX(28), pPmt + "/Dbtr/X", "unknown or unsupported element"},
		{"more than 100000 elements", replaceOnce(t, painSample, dbtr, "<Dbtr>"+strings.Repeat("<X/>", 100_000)+"</Dbtr>"), pPmt + "/Dbtr/X[99979]", "more than 100000 elements"},
		{"missing EndToEndId", replaceOnce(t, painSample, "<EndToEndId>E2E-20260302-0001</EndToEndId>", ""), pTx1 + "/PmtId/EndToEndId", "required element is missing"},
		{"missing creditor", replaceOnce(t, painSample, cdtr1, ""), pTx1 + "/Cdtr", "required element is missing"},
		{"missing creditor agent", replaceOnce(t, painSample, cdtrAgt1, ""), pTx1 + "/CdtrAgt", "required element is missing"},
		{"missing Ccy", replaceOnce(t, painSample, amt1, `<InstdAmt>1234.50</InstdAmt>`), pTx1 + "/Amt/InstdAmt/@Ccy", "required attribute is missing"},
		{"out of order", replaceOnce(t, painSample, cdtrAgt1+"\n        "+cdtr1, cdtr1+cdtrAgt1), pTx1 + "/CdtrAgt", "out of order: it must come before Cdtr"},
		{"BIC and name together", replaceOnce(t, painSample, "<Nm>ICBC Beijing</Nm>", "<BICFI>BKCHCNBJ110</BICFI><Nm>ICBC Beijing</Nm>"), pTx1 + "/CdtrAgt/FinInstnId", "exactly one of BICFI, Nm"},
		{"empty FinInstnId", replaceOnce(t, painSample, "<Nm>ICBC Beijing</Nm>", ""), pTx1 + "/CdtrAgt/FinInstnId", "exactly one of BICFI, Nm"},
		{"IBAN and Othr together", replaceOnce(t, painSample, othr2, "<IBAN>GB82WEST12345698765432</IBAN>"+othr2), pTx2 + "/CdtrAcct/Id", "exactly one of IBAN, Othr"},
		{"Dt and DtTm together", replaceOnce(t, painSample, "<Dt>2026-03-02</Dt>", "<Dt>2026-03-02</Dt><DtTm>2026-03-03T00:00:00</DtTm>"), pPmt + "/ReqdExctnDt", "exactly one of Dt, DtTm"},
		{"mixed content", replaceOnce(t, painSample, dbtr, "<Dbtr>ACME<Nm>北京星河贸易有限公司</Nm></Dbtr>"), pPmt + "/Dbtr", "text mixed with elements"},
		{"text in a complex element", replaceOnce(t, painSample, dbtr, "<Dbtr>ACME</Dbtr>"), pPmt + "/Dbtr", "text is not allowed here"},
		{"element inside text element", name("<Nm>李雷</Nm>"), pTx1 + "/Cdtr/Nm/Nm", "holds only text"},
		{"unknown attribute", replaceNth(t, painSample, "<Cdtr>", `<Cdtr foo="1">`, 1), pTx1 + "/Cdtr/@foo", "attribute is not allowed on Cdtr"},
		{"duplicate attribute", replaceOnce(t, painSample, amt1, `<InstdAmt Ccy="CNY" Ccy="USD">1234.50</InstdAmt>`), pTx1 + "/Amt/InstdAmt/@Ccy", "attribute appears more than once"},
		{"xsi:type", replaceOnce(t, painSample, amt1, `<InstdAmt xsi:type="x" Ccy="CNY">1234.50</InstdAmt>`), pTx1 + "/Amt/InstdAmt/@type", "attribute is not allowed"},
		{"schemaLocation off the root", replaceNth(t, painSample, "<Cdtr>", `<Cdtr xsi:schemaLocation="x">`, 1), pTx1 + "/Cdtr/@schemaLocation", "attribute is not allowed"},

		// Amounts and currency.
		{"amount exponent", amt("1e3"), pTx1 + "/Amt/InstdAmt", "not a plain decimal"},
		{"amount negative", amt("-5"), pTx1 + "/Amt/InstdAmt", "not a plain decimal"},
		{"amount zero", amt("0"), pTx1 + "/Amt/InstdAmt", "greater than zero"},
		{"amount three decimals CNY", amt("1.234"), pTx1 + "/Amt/InstdAmt", "has 3 decimals; CNY allows at most 2"},
		{"amount with spaces", amt(" 1234.50 "), pTx1 + "/Amt/InstdAmt", "not a plain decimal"},
		{"amount grouped", amt("1,234.50"), pTx1 + "/Amt/InstdAmt", "not a plain decimal"},
		{"amount leading zero", amt("01234.50"), pTx1 + "/Amt/InstdAmt", "leading zero"},
		{"amount decimal JPY", replaceOnce(t, painSample, amt1, `<InstdAmt Ccy="JPY">1.5</InstdAmt>`), pTx1 + "/Amt/InstdAmt", "JPY allows none"},
		{"unknown currency", replaceOnce(t, painSample, amt1, `<InstdAmt Ccy="XYZ">1234.50</InstdAmt>`), pTx1 + "/Amt/InstdAmt/@Ccy", "not supported"},
		{"currency with space", replaceOnce(t, painSample, amt1, `<InstdAmt Ccy=" CNY">1234.50</InstdAmt>`), pTx1 + "/Amt/InstdAmt/@Ccy", "not supported"},

		// Text, accounts, codes, dates.
		{"bidi override in name", name("Alice\u202Eecila"), pTx1 + "/Cdtr/Nm", "U+202E, a Unicode bidirectional control"},
		{"bidi override as reference", name("Alice&#x202E;ecila"), pTx1 + "/Cdtr/Nm", "U+202E"},
		{"bidi isolate in bank", replaceOnce(t, painSample, "<Nm>ICBC Beijing</Nm>", "<Nm>ICBC\u2067Beijing</Nm>"), pTx1 + "/CdtrAgt/FinInstnId/Nm", "U+2067"},
		{"bidi in purpose", replaceOnce(t, painSample, "<Ustrd>货款 发票号 20260215</Ustrd>", "<Ustrd>货款\u202B</Ustrd>"), pTx1 + "/RmtInf/Ustrd", "U+202B"},
		{"newline in name", name("李雷&#10;Pay 1.00"), pTx1 + "/Cdtr/Nm", "U+000A, a control character"},
		{"empty name", name(""), pTx1 + "/Cdtr/Nm", "must not be empty"},
		{"self-closed name", replaceOnce(t, painSample, nm1, "<Nm/>"), pTx1 + "/Cdtr/Nm", "must not be empty"},
		{"name with surrounding space", name(" 李雷"), pTx1 + "/Cdtr/Nm", "white space"},
		{"name too long", name(strings.Repeat("雷", 141)), pTx1 + "/Cdtr/Nm", "1 to 140 characters long, is 141"},
		{"MsgId too long", replaceOnce(t, painSample, "<MsgId>MSG-20260302-0001</MsgId>", "<MsgId>"+strings.Repeat("M", 36)+"</MsgId>"), pGrpHdr + "/MsgId", "1 to 35 characters"},
		{"bad BIC", replaceOnce(t, painSample, "<BICFI>BKCHCNBJ110</BICFI>", "<BICFI>BKCH</BICFI>"), pTx2 + "/CdtrAgt/FinInstnId/BICFI", "not a BIC"},
		{"IBAN check digits", replaceOnce(t, painSample, othr2, "<IBAN>GB83WEST12345698765432</IBAN>"), pTx2 + "/CdtrAcct/Id/IBAN", "check digits are wrong"},
		{"IBAN with spaces", replaceOnce(t, painSample, othr2, "<IBAN>GB82 WEST 1234 5698 7654 32</IBAN>"), pTx2 + "/CdtrAcct/Id/IBAN", "not an IBAN"},
		{"account too short", replaceOnce(t, painSample, "<Id>6222 0200 1234 5678</Id>", "<Id>12345</Id>"), pTx1 + "/CdtrAcct/Id/Othr/Id", "6 to 34 characters"},
		{"account with hyphen", replaceOnce(t, painSample, "<Id>6222 0200 1234 5678</Id>", "<Id>6222-0200-1234</Id>"), pTx1 + "/CdtrAcct/Id/Othr/Id", "found U+002D"},
		{"cheque payment", replaceOnce(t, painSample, "<PmtMtd>TRF</PmtMtd>", "<PmtMtd>CHK</PmtMtd>"), pPmt + "/PmtMtd", "must be TRF"},
		{"batch booking", replaceOnce(t, painSample, "<BtchBookg>false</BtchBookg>", "<BtchBookg>1</BtchBookg>"), pPmt + "/BtchBookg", "true or false"},
		{"impossible date", replaceOnce(t, painSample, "<Dt>2026-03-02</Dt>", "<Dt>2026-02-30</Dt>"), pPmt + "/ReqdExctnDt/Dt", "not a real date"},
		{"bad creation time", replaceOnce(t, painSample, "<CreDtTm>2026-03-01T16:30:00+08:00</CreDtTm>", "<CreDtTm>yesterday</CreDtTm>"), pGrpHdr + "/CreDtTm", "ISO date-time"},
		{"two execution dates", twoPmtInf(t, "<Dt>2026-03-09</Dt>"), "Document/CstmrCdtTrfInitn/PmtInf[2]/ReqdExctnDt", "single execution date"},

		// Encoding and syntax.
		{"invalid UTF-8", name("\xc3\x28"), "", "not valid UTF-8"},
		{"truncated", painSample[:len(painSample)/2], "", "malformed XML at line"},
		{"mismatched end tag", replaceOnce(t, painSample, nm1, "<Nm>李雷</Name>"), "", "malformed XML at line"},
		{"unquoted attribute", replaceOnce(t, painSample, amt1, `<InstdAmt Ccy=CNY>1234.50</InstdAmt>`), "", "malformed XML at line"},
		{"bare ampersand", name("A & B"), "", "malformed XML at line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := txformat.ParsePain001([]byte(tt.input))
			if d != nil {
				t.Errorf("returned a document with the error: %+v", d)
			}
			assertRefused(t, err, tt.path, tt.reason)
			_, rerr := txformat.Recognise([]byte(tt.input))
			if rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("Recognise: %v, want %v", rerr, err)
			}
		})
	}
}
