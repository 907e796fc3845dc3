package pkcs11shim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// The ceremony officers' roster (cmd/ceremony, issue 13 defect 2): each
// enrolled officer is an EC P-256 public-key object on the ceremony's token,
// labelled "officer:<name>", public (readable without a login), and
// CKA_TRUSTED — which only the security officer can set (SoftHSM 2:
// P11AttrTrusted refuses CKA_TRUSTED=true unless the SO is logged in). A
// user-PIN holder can create an "officer:mallory" object but not a trusted
// one, so the roster is the trusted officer objects only.

// OfficerLabelPrefix starts the label of every roster object.
const OfficerLabelPrefix = "officer:"

// Officer is one roster entry.
type Officer struct {
	Name   string
	Public *ecdsa.PublicKey
}

var p256OID = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}

// TrustedOfficers reads the roster of the token named by sel without any
// login: the public, trusted EC P-256 public-key objects labelled
// "officer:<name>". Objects that are not trusted (anyone with the user PIN
// can create those) are not returned; neither are officer objects that are
// private, modifiable or on another curve.
func (m *Module) TrustedOfficers(sel Selector) ([]Officer, error) {
	ti, err := m.FindToken(sel)
	if err != nil {
		return nil, err
	}
	var out []Officer
	err = m.call(func(c PKCtx) error {
		out = nil
		h, err := c.OpenSession(ti.SlotID, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return wrapErr("C_OpenSession", err)
		}
		defer c.CloseSession(h)
		if err := c.FindObjectsInit(h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		}); err != nil {
			return wrapErr("C_FindObjectsInit", err)
		}
		objs, _, err := c.FindObjects(h, maxObjects)
		ferr := c.FindObjectsFinal(h)
		if err != nil {
			return wrapErr("C_FindObjects", err)
		}
		if ferr != nil {
			return wrapErr("C_FindObjectsFinal", ferr)
		}
		for _, o := range objs {
			a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
				pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, nil),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
				pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
			})
			if err != nil {
				return wrapErr("C_GetAttributeValue", err)
			}
			label := string(a[0].Value)
			name, ok := strings.CutPrefix(label, OfficerLabelPrefix)
			if !ok || name == "" || !isTrue(a[1].Value) || isTrue(a[2].Value) || isTrue(a[3].Value) {
				continue
			}
			params, _ := asn1.Marshal(p256OID)
			if !bytes.Equal(a[4].Value, params) {
				continue
			}
			pub, err := parseECPoint(elliptic.P256(), a[5].Value)
			if err != nil {
				continue
			}
			out = append(out, Officer{Name: name, Public: pub})
		}
		return nil
	})
	return out, err
}

func isTrue(v []byte) bool { return len(v) == 1 && v[0] != 0 }

// EnrolOfficers logs in as the security officer with soPIN (exactly once)
// and creates one roster object per officer: an EC P-256 public key,
// CKA_TOKEN, public, CKA_TRUSTED, neither modifiable nor copyable, able to
// verify only. A name or a key already on the trusted roster is refused
// before anything is created.
func (m *Module) EnrolOfficers(sel Selector, soPIN []byte, officers []Officer) error {
	for _, o := range officers {
		if o.Name == "" || o.Public == nil || o.Public.Curve != elliptic.P256() {
			return fmt.Errorf("%w: an officer needs a name and an EC P-256 public key", ErrInputInvalid)
		}
	}
	have, err := m.TrustedOfficers(sel)
	if err != nil {
		return err
	}
	for _, o := range officers {
		for _, h := range have {
			if h.Name == o.Name {
				return fmt.Errorf("%w: officer %q is already enrolled", ErrDuplicateLabel, o.Name)
			}
			if h.Public.Equal(o.Public) {
				// One key under two names would count as two officers.
				return fmt.Errorf("%w: %q's key is already enrolled as officer %q", ErrDuplicateLabel, o.Name, h.Name)
			}
		}
	}
	return m.withLogin(sel, UserSO, soPIN, func(c PKCtx, h pkcs11.SessionHandle) error {
		cr, ok := c.(objectCreator)
		if !ok {
			return fmt.Errorf("%w: the module binding offers no C_CreateObject", ErrMechanismInvalid)
		}
		params, _ := asn1.Marshal(p256OID)
		for _, o := range officers {
			//nolint:staticcheck // elliptic.Marshal is the uncompressed SEC 1 point CKA_EC_POINT wants
			point, err := asn1.Marshal(elliptic.Marshal(o.Public.Curve, o.Public.X, o.Public.Y))
			if err != nil {
				return err
			}
			_, err = cr.CreateObject(h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false), // the roster is read without a login
				pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),  // only the SO can set it
				pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, OfficerLabelPrefix+o.Name),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
				pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
				pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
				pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point),
			})
			if err != nil {
				return wrapErr("C_CreateObject", err)
			}
		}
		return nil
	})
}

// RetireOfficers logs in as the security officer with soPIN (exactly once)
// and destroys the trusted roster objects of the named officers. A name
// not on the trusted roster is refused before anything is destroyed.
func (m *Module) RetireOfficers(sel Selector, soPIN []byte, names []string) error {
	have, err := m.TrustedOfficers(sel)
	if err != nil {
		return err
	}
	for _, n := range names {
		found := false
		for _, h := range have {
			found = found || h.Name == n
		}
		if !found {
			return fmt.Errorf("%w: officer %q is not on the trusted roster", ErrKeyNotFound, n)
		}
	}
	return m.withLogin(sel, UserSO, soPIN, func(c PKCtx, h pkcs11.SessionHandle) error {
		for _, n := range names {
			if err := c.FindObjectsInit(h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, true),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, OfficerLabelPrefix+n),
			}); err != nil {
				return wrapErr("C_FindObjectsInit", err)
			}
			objs, _, err := c.FindObjects(h, 16)
			ferr := c.FindObjectsFinal(h)
			if err != nil {
				return wrapErr("C_FindObjects", err)
			}
			if ferr != nil {
				return wrapErr("C_FindObjectsFinal", ferr)
			}
			if len(objs) == 0 {
				return fmt.Errorf("%w: officer %q's roster object", ErrKeyNotFound, n)
			}
			for _, o := range objs {
				if err := c.DestroyObject(h, o); err != nil {
					return wrapErr("C_DestroyObject", err)
				}
			}
		}
		return nil
	})
}
