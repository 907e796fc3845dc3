package txformat

// The subset of pain.001.001.09 this package accepts, as an allow-list
// tree. Elements appear in their XSD sequence order; anything not listed
// is refused, even where the XSD would allow it, because an element this
// package does not display could change what the bank does (an ultimate
// creditor, an intermediary agent, an equivalent amount in another
// currency).

// leafKind selects the check applied to a leaf element's text.
type leafKind int

const (
	complexElem leafKind = iota // has child elements, no text
	kMax35                      // Max35Text
	kMax140                     // Max140Text
	kAccount                    // Othr/Id: 6–34 letters, digits, spaces (trimmed)
	kIBAN                       // IBAN2007Identifier with check digits
	kBIC                        // BICFIDec2014Identifier
	kDecimal                    // DecimalNumber (CtrlSum)
	kNumeric15                  // Max15NumericText (NbOfTxs)
	kDate                       // ISODate
	kDateTime                   // ISODateTime
	kAmount                     // ActiveOrHistoricCurrencyAndAmount: checked with its Ccy
	kCode4                      // external code, 1–4 letters or digits
	kCode35                     // external code, 1–35 letters or digits
	kPmtMtd                     // PaymentMethod3Code, only TRF (credit transfer)
	kBool                       // xs:boolean as "true" or "false"
	kPriority                   // Priority2Code: HIGH or NORM
)

const unbounded = int(^uint(0) >> 1)

// elemSpec describes one allowed element.
type elemSpec struct {
	name     string
	min, max int
	kind     leafKind
	attrs    []string // allowed attributes, as "Local" or "namespace Local"
	choice   bool     // exactly one of kids must be present
	kids     []*elemSpec
}

func seq(name string, min, max int, kids ...*elemSpec) *elemSpec {
	return &elemSpec{name: name, min: min, max: max, kids: kids}
}

func oneOf(name string, min, max int, kids ...*elemSpec) *elemSpec {
	return &elemSpec{name: name, min: min, max: max, choice: true, kids: kids}
}

func leaf(name string, min, max int, k leafKind) *elemSpec {
	return &elemSpec{name: name, min: min, max: max, kind: k}
}

func (s *elemSpec) kid(name string) (*elemSpec, int) {
	for i, k := range s.kids {
		if k.name == name {
			return k, i
		}
	}
	return nil, -1
}

const (
	nsPain001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
	nsXSI     = "http://www.w3.org/2001/XMLSchema-instance"
)

// codeOrProprietary is the common {Cd | Prtry} choice.
func codeOrProprietary(name string, min, max int, code leafKind) *elemSpec {
	return oneOf(name, min, max, leaf("Cd", 0, 1, code), leaf("Prtry", 0, 1, kMax35))
}

// account is CashAccount38 restricted to Id: {IBAN | Othr{Id, SchmeNm?}}.
func account(name string) *elemSpec {
	return seq(name, 1, 1,
		oneOf("Id", 1, 1,
			leaf("IBAN", 0, 1, kIBAN),
			seq("Othr", 0, 1,
				leaf("Id", 1, 1, kAccount),
				codeOrProprietary("SchmeNm", 0, 1, kCode4))))
}

// agent is BranchAndFinancialInstitutionIdentification6 restricted to
// FinInstnId with exactly one of BICFI and Nm: with both, the name shown
// could belong to another bank than the BIC that routes the money.
func agent(name string) *elemSpec {
	return seq(name, 1, 1,
		oneOf("FinInstnId", 1, 1,
			leaf("BICFI", 0, 1, kBIC),
			leaf("Nm", 0, 1, kMax140)))
}

var pain001Schema = func() *elemSpec {
	grpHdr := seq("GrpHdr", 1, 1,
		leaf("MsgId", 1, 1, kMax35),
		leaf("CreDtTm", 1, 1, kDateTime),
		leaf("NbOfTxs", 1, 1, kNumeric15),
		leaf("CtrlSum", 0, 1, kDecimal),
		seq("InitgPty", 1, 1, leaf("Nm", 0, 1, kMax140)))

	pmtTpInf := seq("PmtTpInf", 0, 1,
		leaf("InstrPrty", 0, 1, kPriority),
		codeOrProprietary("SvcLvl", 0, unbounded, kCode4),
		codeOrProprietary("LclInstrm", 0, 1, kCode35),
		codeOrProprietary("CtgyPurp", 0, 1, kCode4))

	instdAmt := leaf("InstdAmt", 1, 1, kAmount)
	instdAmt.attrs = []string{"Ccy"}

	tx := seq("CdtTrfTxInf", 1, unbounded,
		seq("PmtId", 1, 1,
			leaf("InstrId", 0, 1, kMax35),
			leaf("EndToEndId", 1, 1, kMax35)),
		seq("Amt", 1, 1, instdAmt),
		agent("CdtrAgt"),
		seq("Cdtr", 1, 1, leaf("Nm", 1, 1, kMax140)),
		account("CdtrAcct"),
		seq("RmtInf", 0, 1, leaf("Ustrd", 1, 1, kMax140)))

	pmtInf := seq("PmtInf", 1, unbounded,
		leaf("PmtInfId", 1, 1, kMax35),
		leaf("PmtMtd", 1, 1, kPmtMtd),
		leaf("BtchBookg", 0, 1, kBool),
		leaf("NbOfTxs", 0, 1, kNumeric15),
		leaf("CtrlSum", 0, 1, kDecimal),
		pmtTpInf,
		oneOf("ReqdExctnDt", 1, 1,
			leaf("Dt", 0, 1, kDate),
			leaf("DtTm", 0, 1, kDateTime)),
		seq("Dbtr", 1, 1, leaf("Nm", 0, 1, kMax140)),
		account("DbtrAcct"),
		agent("DbtrAgt"),
		tx)

	root := seq("Document", 1, 1, seq("CstmrCdtTrfInitn", 1, 1, grpHdr, pmtInf))
	root.attrs = []string{nsXSI + " schemaLocation"}
	return root
}()
