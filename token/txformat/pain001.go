package txformat

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParsePain001 parses and validates a pain.001.001.09 Customer Credit
// Transfer Initiation; see the package documentation for the accepted
// subset and every rule applied.
//
// Parsing runs in two passes. The first reads encoding/xml's token stream
// into a small tree, refusing what XML itself allows but this package does
// not: DTDs, comments, processing instructions, foreign namespaces, mixed
// content, duplicate attributes, a second root element, deep nesting and
// too many transactions. The second checks the tree against the allow-list
// in pain001_schema.go and reads the fields.
func ParsePain001(b []byte) (*Document, error) {
	if len(b) > MaxDocumentSize {
		return nil, invalid("", "document is %d bytes, larger than the %d-byte limit", len(b), MaxDocumentSize)
	}
	if !utf8.Valid(b) {
		return nil, invalid("", "document is not valid UTF-8")
	}
	hasDecl, err := checkXMLDecl(b)
	if err != nil {
		return nil, err
	}
	root, err := readXMLTree(b, hasDecl)
	if err != nil {
		return nil, err
	}
	if err := validateTree(root, pain001Schema, root.seg()); err != nil {
		return nil, err
	}
	return extractPain001(root)
}

// maxElements bounds the first pass's tree. MaxTransfers transactions,
// each in its own PmtInf with every allowed element, stay well below it.
const maxElements = 100_000

// xnode is an element read in the first pass.
type xnode struct {
	name   string
	spec   *elemSpec // nil if the name is not allowed there
	index  int       // 1-based position among same-named siblings
	attrs  []xml.Attr
	text   []byte
	chunks int // CharData tokens, more than one if CDATA splits the text
	kids   []*xnode
	seen   map[string]int // kids per name, to index them in constant time
}

// seg is the node's path segment: its name, indexed if it may repeat.
func (n *xnode) seg() string {
	name := safeName(n.name)
	if (n.spec != nil && n.spec.max > 1) || (n.spec == nil && n.index > 1) {
		return name + "[" + strconv.Itoa(n.index) + "]"
	}
	return name
}

// safeName quotes an element or attribute name taken from the input if it
// holds anything that should not reach a log or screen unescaped.
func safeName(s string) string {
	for _, r := range s {
		if badRune(r) != "" {
			return strconv.Quote(s)
		}
	}
	return s
}

// childPath is the path of n as a child of the top of stack.
func childPath(stack []*xnode, n *xnode) string {
	return pathOf(append(stack[:len(stack):len(stack)], n))
}

func pathOf(stack []*xnode) string {
	segs := make([]string, len(stack))
	for i, n := range stack {
		segs[i] = n.seg()
	}
	return strings.Join(segs, "/")
}

func (n *xnode) kid(name string) *xnode {
	for _, k := range n.kids {
		if k.name == name {
			return k
		}
	}
	return nil
}

func (n *xnode) kidsNamed(name string) []*xnode {
	var out []*xnode
	for _, k := range n.kids {
		if k.name == name {
			out = append(out, k)
		}
	}
	return out
}

func (n *xnode) kidText(name string) string {
	if k := n.kid(name); k != nil {
		return string(k.text)
	}
	return ""
}

func (n *xnode) attr(local string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

var xmlDeclRE = regexp.MustCompile(`^<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:"1\.0"|'1\.0')` +
	`(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:"([A-Za-z][A-Za-z0-9._-]*)"|'([A-Za-z][A-Za-z0-9._-]*)'))?` +
	`(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:"(?:yes|no)"|'(?:yes|no)'))?[ \t\r\n]*\?>`)

// checkXMLDecl validates an XML declaration at the start of b, if there is
// one: version 1.0 and, if an encoding is named, UTF-8.
func checkXMLDecl(b []byte) (bool, error) {
	if !bytes.HasPrefix(b, []byte("<?xml")) || (len(b) > 5 && !isXMLSpace(b[5:6]) && b[5] != '?') {
		return false, nil
	}
	m := xmlDeclRE.FindSubmatch(b)
	if m == nil {
		return false, invalid("", `malformed XML declaration; expected <?xml version="1.0" encoding="UTF-8"?>`)
	}
	enc := string(m[1]) + string(m[2])
	if enc != "" && !strings.EqualFold(enc, "UTF-8") {
		return false, invalid("", "XML declaration names encoding %q; only UTF-8 is accepted", enc)
	}
	return true, nil
}

// readXMLTree is the first pass.
func readXMLTree(b []byte, hasDecl bool) (*xnode, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	var (
		stack  []*xnode
		root   *xnode
		nTx    int
		nElems int
	)
	for first := true; ; first = false {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, xmlSyntax(err)
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target == "xml" && first && hasDecl {
				continue
			}
			if strings.EqualFold(t.Target, "xml") {
				return nil, invalid(pathOf(stack), "an XML declaration may appear only at the very start of the document")
			}
			return nil, invalid(pathOf(stack), "processing instruction <?%s …?> is not allowed", safeName(t.Target))
		case xml.Directive:
			if bytes.HasPrefix(bytes.TrimLeft(t, " \t\r\n"), []byte("DOCTYPE")) {
				return nil, invalid(pathOf(stack), "DOCTYPE (DTD) declarations are not allowed: they can declare entities, as in the billion laughs attack")
			}
			return nil, invalid(pathOf(stack), "markup declaration <!%s> is not allowed", quote(string(t)))
		case xml.Comment:
			return nil, invalid(pathOf(stack), "XML comments are not allowed: a comment can split a value so that different parsers read different text")
		case xml.StartElement:
			n, err := startNode(t, stack, root)
			if err != nil {
				return nil, err
			}
			if nElems++; nElems > maxElements {
				return nil, invalid(childPath(stack, n), "more than %d elements", maxElements)
			}
			if n.name == "CdtTrfTxInf" {
				if nTx++; nTx > MaxTransfers {
					return nil, invalid(childPath(stack, n), "more than %d transactions", MaxTransfers)
				}
			}
			if root == nil {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			n := stack[len(stack)-1]
			if len(n.kids) > 0 && !isXMLSpace(n.text) {
				return nil, invalid(pathOf(stack), "text mixed with elements is not allowed")
			}
			if len(n.kids) == 0 && n.chunks > 1 {
				return nil, invalid(pathOf(stack), "text is split into several parts (CDATA sections); write it as one")
			}
			if len(n.kids) > 0 {
				n.text = nil
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if !isXMLSpace(t) {
					return nil, invalid("", "text outside the root element")
				}
				continue
			}
			n := stack[len(stack)-1]
			n.text = append(n.text, t...)
			n.chunks++
		}
	}
	if root == nil {
		return nil, invalid("", "no root element")
	}
	return root, nil
}

// startNode makes the node for t, checking depth, namespace, the single
// root and attributes, and links it to its parent.
func startNode(t xml.StartElement, stack []*xnode, root *xnode) (*xnode, error) {
	n := &xnode{name: t.Name.Local, index: 1}
	if len(stack) == 0 {
		if root != nil {
			return nil, invalid(safeName(t.Name.Local), "a second root element is not allowed")
		}
		if t.Name.Local == pain001Schema.name {
			n.spec = pain001Schema
		}
	} else {
		parent := stack[len(stack)-1]
		if parent.spec != nil {
			n.spec, _ = parent.spec.kid(n.name)
		}
		if parent.seen == nil {
			parent.seen = make(map[string]int)
		}
		parent.seen[n.name]++
		n.index = parent.seen[n.name]
		parent.kids = append(parent.kids, n)
	}
	if len(stack) >= MaxDepth {
		return nil, invalid(childPath(stack, n), "elements are nested more than %d deep", MaxDepth)
	}
	if t.Name.Space != nsPain001 {
		if len(stack) == 0 {
			return nil, invalid(childPath(stack, n), "root element must be in namespace %s, is in %q", nsPain001, t.Name.Space)
		}
		return nil, invalid(childPath(stack, n), "element is in namespace %q, not %s", t.Name.Space, nsPain001)
	}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue // namespace declaration; its effect is checked on each element
		}
		for _, prev := range n.attrs {
			if prev.Name == a.Name {
				return nil, invalid(childPath(stack, n)+"/@"+safeName(a.Name.Local), "attribute appears more than once")
			}
		}
		n.attrs = append(n.attrs, a)
	}
	return n, nil
}

func xmlSyntax(err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return invalid("", "malformed XML at line %d: %s", se.Line, se.Msg)
	}
	return invalid("", "malformed XML: %v", err)
}

func isXMLSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// validateTree is the second pass: n must match s exactly.
func validateTree(n *xnode, s *elemSpec, path string) error {
	if n.name != s.name {
		return invalid(path, "root element must be %s, is %s", s.name, safeName(n.name))
	}
	for _, a := range n.attrs {
		key := a.Name.Local
		if a.Name.Space != "" {
			key = a.Name.Space + " " + a.Name.Local
		}
		allowed := false
		for _, k := range s.attrs {
			allowed = allowed || k == key
		}
		if !allowed {
			return invalid(path+"/@"+safeName(a.Name.Local), "attribute is not allowed on %s", s.name)
		}
	}
	if s.kind != complexElem {
		if len(n.kids) > 0 {
			return invalid(path+"/"+n.kids[0].seg(), "element is not allowed inside %s, which holds only text", s.name)
		}
		return checkLeaf(n, s.kind, path)
	}
	if !isXMLSpace(n.text) {
		return invalid(path, "text is not allowed here; %s holds only elements", s.name)
	}
	counts := make(map[string]int, len(s.kids))
	last := -1
	for _, k := range n.kids {
		ks, i := s.kid(k.name)
		kpath := path + "/" + k.seg()
		if ks == nil {
			return invalid(kpath, "unknown or unsupported element; %s may contain only %s", s.name, kidNames(s))
		}
		if counts[k.name]++; counts[k.name] > ks.max {
			return invalid(kpath, "element appears more than once; only one is allowed")
		}
		if i < last {
			return invalid(kpath, "element is out of order: it must come before %s", s.kids[last].name)
		}
		last = i
		if err := validateTree(k, ks, kpath); err != nil {
			return err
		}
	}
	present := 0
	for _, ks := range s.kids {
		if counts[ks.name] < ks.min {
			return invalid(path+"/"+ks.name, "required element is missing")
		}
		if counts[ks.name] > 0 {
			present++
		}
	}
	if s.choice && present != 1 {
		return invalid(path, "must contain exactly one of %s", kidNames(s))
	}
	return nil
}

func kidNames(s *elemSpec) string {
	names := make([]string, len(s.kids))
	for i, k := range s.kids {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

// checkLeaf applies the rule for kind to a leaf's text.
func checkLeaf(n *xnode, kind leafKind, path string) error {
	v := string(n.text)
	var why string
	switch kind {
	case kMax35:
		why = checkText(v, 1, 35)
	case kMax140:
		why = checkText(v, 1, 140)
	case kAccount:
		_, why = checkAccount(v)
	case kIBAN:
		why = checkIBAN(v)
	case kBIC:
		why = checkBIC(v)
	case kDecimal:
		why = checkDecimal(v)
	case kNumeric15:
		if !numeric15.MatchString(v) {
			why = "must be 1 to 15 digits"
		}
	case kDate:
		why = checkISODate(v)
	case kDateTime:
		why = checkISODateTime(v)
	case kCode4:
		if !code4RE.MatchString(v) {
			why = "must be a code of 1 to 4 letters or digits"
		}
	case kCode35:
		if !code35RE.MatchString(v) {
			why = "must be a code of 1 to 35 letters or digits"
		}
	case kPmtMtd:
		if v != "TRF" {
			why = "must be TRF (credit transfer); cheques and transfer advices are not supported"
		}
	case kBool:
		if v != "true" && v != "false" {
			why = "must be true or false"
		}
	case kPriority:
		if v != "HIGH" && v != "NORM" {
			why = "must be HIGH or NORM"
		}
	case kAmount:
		ccy, ok := n.attr("Ccy")
		if !ok {
			return invalid(path+"/@Ccy", "required attribute is missing")
		}
		if why = checkCurrency(ccy); why != "" {
			return invalid(path+"/@Ccy", "%s", why)
		}
		why = checkAmount(v, ccy)
	}
	if why != "" {
		return invalid(path, "%s", why)
	}
	return nil
}

// extractPain001 reads the fields of a tree that passed validateTree and
// checks the counts and control sums.
func extractPain001(root *xnode) (*Document, error) {
	const initPath = "Document/CstmrCdtTrfInitn"
	init := root.kid("CstmrCdtTrfInitn")
	hdr := init.kid("GrpHdr")
	doc := &Document{Format: FormatPain001, MessageID: hdr.kidText("MsgId")}
	sumAll := new(big.Rat)
	for i, pi := range init.kidsNamed("PmtInf") {
		ppath := initPath + "/" + pi.seg()
		req := string(pi.kid("ReqdExctnDt").kids[0].text)
		if i == 0 {
			doc.Requested = req
		} else if req != doc.Requested {
			return nil, invalid(ppath+"/ReqdExctnDt", "is %s but PmtInf[1] asks for %s; a message must have a single execution date", req, doc.Requested)
		}
		payer := accountOf(pi.kid("DbtrAcct"))
		txs := pi.kidsNamed("CdtTrfTxInf")
		sum := new(big.Rat)
		for _, tx := range txs {
			amt := tx.kid("Amt").kid("InstdAmt")
			ccy, _ := amt.attr("Ccy")
			t := Transfer{
				PayerAccount: payer,
				PayeeAccount: accountOf(tx.kid("CdtrAcct")),
				PayeeName:    tx.kid("Cdtr").kidText("Nm"),
				PayeeBank:    agentOf(tx.kid("CdtrAgt")),
				Amount:       string(amt.text),
				Currency:     ccy,
				EndToEndID:   tx.kid("PmtId").kidText("EndToEndId"),
			}
			if r := tx.kid("RmtInf"); r != nil {
				t.Purpose = r.kidText("Ustrd")
			}
			sum.Add(sum, decimalRat(t.Amount))
			doc.Transfers = append(doc.Transfers, t)
		}
		if err := checkCounts(pi, ppath, len(txs), sum); err != nil {
			return nil, err
		}
		sumAll.Add(sumAll, sum)
	}
	if err := checkCounts(hdr, initPath+"/GrpHdr", len(doc.Transfers), sumAll); err != nil {
		return nil, err
	}
	doc.Total = totals(doc.Transfers)
	return doc, nil
}

// checkCounts compares n's NbOfTxs (required or optional) and optional
// CtrlSum with the transactions they describe. Like ISO 20022, the
// control sum adds amounts regardless of currency.
func checkCounts(n *xnode, path string, count int, sum *big.Rat) error {
	if nb := n.kid("NbOfTxs"); nb != nil {
		if v, err := strconv.ParseUint(string(nb.text), 10, 64); err != nil || v != uint64(count) {
			return invalid(path+"/NbOfTxs", "is %s but there are %d CdtTrfTxInf", nb.text, count)
		}
	}
	if cs := n.kid("CtrlSum"); cs != nil {
		if decimalRat(string(cs.text)).Cmp(sum) != 0 {
			return invalid(path+"/CtrlSum", "is %s but the amounts add up to %s", cs.text, sum.FloatString(3))
		}
	}
	return nil
}

func decimalRat(s string) *big.Rat {
	r, _ := new(big.Rat).SetString(s) // validated decimal
	return r
}

// accountOf reads a validated account: the IBAN, or Othr/Id trimmed.
func accountOf(acct *xnode) string {
	id := acct.kid("Id")
	if iban := id.kid("IBAN"); iban != nil {
		return string(iban.text)
	}
	t, _ := checkAccount(id.kid("Othr").kidText("Id"))
	return t
}

// agentOf reads a validated agent's BICFI or Nm, whichever is present.
func agentOf(agt *xnode) string {
	return string(agt.kid("FinInstnId").kids[0].text)
}
