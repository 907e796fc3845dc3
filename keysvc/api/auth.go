package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// callerKey is the fiber Locals key under which admission stores the Caller.
const callerKey = "keyward.caller"

// registry is the admission table built from Config.Clients.
type registry struct {
	byName  map[string]Client
	tokens  []tokenEntry // clients with a bearer token
	byToken map[string]bool
}

type tokenEntry struct {
	digest []byte // sha256 of the token
	client Client
}

func newRegistry(clients []Client) (*registry, error) {
	r := &registry{byName: make(map[string]Client), byToken: make(map[string]bool)}
	for i, cl := range clients {
		if cl.Name == "" {
			return nil, fmt.Errorf("api: clients[%d].name is empty", i)
		}
		if _, dup := r.byName[cl.Name]; dup {
			return nil, fmt.Errorf("api: clients[%d].name %q is listed twice", i, cl.Name)
		}
		r.byName[cl.Name] = cl
		if cl.TokenSHA256 == "" {
			continue // certificate only
		}
		d, err := hex.DecodeString(cl.TokenSHA256)
		if err != nil || len(d) != sha256.Size {
			return nil, fmt.Errorf("api: clients[%d] (%s): token_sha256 must be 64 hex digits (sha256 of the token)", i, cl.Name)
		}
		if r.byToken[string(d)] {
			return nil, fmt.Errorf("api: clients[%d] (%s): token_sha256 is shared with another client", i, cl.Name)
		}
		r.byToken[string(d)] = true
		r.tokens = append(r.tokens, tokenEntry{digest: d, client: cl})
	}
	return r, nil
}

// byBearer finds the client whose token hashes to sum. It compares with
// every entry in constant time and never stops early, so the time taken
// says nothing about which digest bytes matched.
func (r *registry) byBearer(token string) (Client, bool) {
	sum := sha256.Sum256([]byte(token))
	var (
		found Client
		match int
	)
	for _, e := range r.tokens {
		if subtle.ConstantTimeCompare(sum[:], e.digest) == 1 {
			found = e.client
			match = 1
		}
	}
	return found, match == 1
}

// admission is the one admission control for every /v1 route (R-SRV-2).
//
//  1. A client certificate the TLS layer verified names the client by its
//     Subject CommonName, which must be listed in Config.Clients.
//  2. Otherwise "Authorization: Bearer <token>" names the client whose
//     TokenSHA256 is the token's SHA-256.
//  3. Otherwise, or when either does not match, 401.
//
// A verified certificate with an unknown name is refused even if a valid
// bearer token comes with it: one request, one identity. Authorisation
// (which keys and operations) is the Backend's, from each key's policy.
//
// Admission also refuses bodies that are not plain JSON (415) and records
// the body's SHA-256 in Caller.BodySHA256, which the Service keys
// (audit.DigestScheme) before it goes into an audit record.
func (s *Server) admission(c *fiber.Ctx) error {
	cl, err := s.authenticate(c)
	if err != nil {
		httpedge.Logger(c).Info("request refused", "reason", err.Message, "remote", c.IP())
		return err
	}
	if err := httpedge.CheckMediaType(c); err != nil {
		return err
	}
	sum := sha256.Sum256(c.Request().Body())
	c.Locals(callerKey, keysvc.Caller{Name: cl.Name, Admin: cl.Admin, EnrolPrefixes: cl.EnrolPrefixes, BodySHA256: sum[:]})
	return c.Next()
}

func (s *Server) authenticate(c *fiber.Ctx) (Client, *apiError) {
	if st := c.Context().TLSConnectionState(); st != nil && len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
		cn := st.PeerCertificates[0].Subject.CommonName
		if cl, ok := s.clients.byName[cn]; ok && cn != "" {
			return cl, nil
		}
		return Client{}, newError(http.StatusUnauthorized, codeUnauthenticated, "client certificate names no registered client")
	}
	auth := c.Get(fiber.HeaderAuthorization)
	if auth == "" {
		return Client{}, newError(http.StatusUnauthorized, codeUnauthenticated, "authentication required: a client certificate or an Authorization: Bearer token")
	}
	scheme, token, ok := strings.Cut(auth, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Client{}, newError(http.StatusUnauthorized, codeUnauthenticated, "the Authorization header must be \"Bearer <token>\"")
	}
	cl, found := s.clients.byBearer(token)
	if !found {
		return Client{}, newError(http.StatusUnauthorized, codeUnauthenticated, "invalid bearer token")
	}
	return cl, nil
}

// caller returns the Caller admission stored for this request.
func caller(c *fiber.Ctx) keysvc.Caller {
	cl, _ := c.Locals(callerKey).(keysvc.Caller)
	return cl
}
