package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc"
	"github.com/keyward/keyward/keysvc/wire"
	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// MaxBatch is the most signatures one sign-batch request may ask for.
const MaxBatch = 1000

// readyTimeout bounds a readiness probe's Backend.Ready call.
const readyTimeout = 5 * time.Second

func (s *Server) routes() {
	a := s.app
	// Unauthenticated: probes and the API description. The OpenAPI route
	// is registered before the /v1 admission middleware, so it matches
	// first and admission never runs for it. Metrics are not served here
	// (see MetricsHandler).
	a.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	a.Get("/readyz", s.readyz)
	a.Get("/v1/openapi.json", serveOpenAPI)

	v1 := a.Group("/v1", s.admission)
	v1.Post("/keys", s.op("create", false, s.createKey))
	v1.Get("/keys", s.op("list", false, s.listKeys))
	v1.Get("/keys/:name", s.op("get", true, s.getKey))
	v1.Post("/keys/:name/rotate", s.op("rotate", true, s.rotate))
	v1.Post("/keys/:name/settings", s.op("settings", true, s.settings))
	v1.Post("/keys/:name/sign", s.op("sign", true, s.sign))
	v1.Post("/keys/:name/sign-batch", s.op("sign_batch", true, s.signBatch))
	v1.Post("/keys/:name/verify", s.op("verify", true, s.verify))
	v1.Post("/keys/:name/mac", s.op("mac", true, s.mac))
	v1.Post("/keys/:name/mac-verify", s.op("mac_verify", true, s.macVerify))
	v1.Post("/keys/:name/encrypt", s.op("encrypt", true, s.encrypt))
	v1.Post("/keys/:name/decrypt", s.op("decrypt", true, s.decrypt))
	v1.Post("/keys/:name/datakey", s.op("datakey", true, s.dataKey))
	v1.Post("/keys/:name/versions/:v/:action", s.op("version_state", true, s.versionState))
	v1.Get("/keys/:name/public", s.op("public", true, s.publicKey))
	v1.Post("/keys/:name/holder/unlock", s.op("holder_unlock", true, s.holderUnlock))
	v1.Post("/keys/:name/holder/reset", s.op("holder_reset", true, s.holderReset))
	v1.Get("/confirmations/:id", s.op("confirmation", false, s.confirmation))
	v1.Delete("/confirmations/:id", s.op("confirmation_cancel", false, s.cancelConfirmation))
	v1.Post("/admin/kek-rotation", s.op("kek_rotation_start", false, s.startKEKRotation))
	v1.Get("/admin/kek-rotation", s.op("kek_rotation", false, s.kekRotation))
	v1.Get("/admin/backup", s.backup) // streamed, not JSON: its own metrics (backup.go)
}

// call is one admitted API request.
type call struct {
	fc     *fiber.Ctx
	ctx    context.Context
	caller keysvc.Caller
	name   string // the path's key name, validated; create sets it from the body
}

// reply is a handler's successful answer.
type reply struct {
	status int
	body   any
}

func ok(body any) (reply, error) { return reply{http.StatusOK, body}, nil }

type opHandler func(r *call) (reply, error)

// op wraps a /v1 handler: it validates the :name parameter, runs h and
// records keyward_operations_total and keyward_operation_duration_seconds.
// Errors go to the ErrorHandler, which renders them from the error table.
func (s *Server) op(op string, keyed bool, h opHandler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		r := &call{fc: c, ctx: c.UserContext(), caller: caller(c)}
		var (
			res reply
			err error
		)
		if keyed {
			r.name = c.Params("name")
			err = validKeyName(r.name)
		}
		if err == nil {
			res, err = h(r)
		}
		result := "ok"
		if err != nil {
			_, result, _, _ = classify(err)
		}
		s.metrics.observe(op, result, time.Since(start).Seconds())
		if err != nil {
			return err
		}
		return c.Status(res.status).JSON(res.body)
	}
}

// errNoKey reports a Backend that returned neither a key nor an error.
var errNoKey = errors.New("api: backend returned a nil key without an error")

func view(k *keysvc.Key, err error) (wire.KeyView, error) {
	if err != nil {
		return wire.KeyView{}, err
	}
	if k == nil {
		return wire.KeyView{}, errNoKey
	}
	return k.View(), nil // never the raw Key: it holds object labels and wrapped blobs
}

func (s *Server) createKey(r *call) (reply, error) {
	var req wire.CreateKeyRequest
	if err := httpedge.Decode(r.fc, &req); err != nil {
		return reply{}, err
	}
	if err := validKeyName(req.Name); err != nil {
		return reply{}, err
	}
	v, err := view(s.backend.CreateKey(r.ctx, r.caller, req))
	if err != nil {
		return reply{}, err
	}
	r.name = v.Name
	return reply{http.StatusCreated, v}, nil
}

func (s *Server) listKeys(r *call) (reply, error) {
	limit := 0
	if l := r.fc.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > keysvc.MaxListKeys {
			return reply{}, invalidArgument(`"limit" must be a number from 1 to 1000`)
		}
		limit = n
	}
	after := r.fc.Query("after")
	if after != "" {
		if err := validKeyName(after); err != nil {
			return reply{}, invalidArgument(`"after" must be a key name (the "next" of the previous page)`)
		}
	}
	keys, next, err := s.backend.ListKeys(r.ctx, r.caller, after, limit)
	if err != nil {
		return reply{}, err
	}
	out := wire.KeyList{Keys: make([]wire.KeyView, 0, len(keys)), Next: next}
	for _, k := range keys {
		v, err := view(k, nil)
		if err != nil {
			return reply{}, err
		}
		out.Keys = append(out.Keys, v)
	}
	return ok(out)
}

func (s *Server) getKey(r *call) (reply, error) {
	v, err := view(s.backend.GetKey(r.ctx, r.caller, r.name))
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

func (s *Server) rotate(r *call) (reply, error) {
	var none struct{}
	if err := httpedge.DecodeOptional(r.fc, &none); err != nil {
		return reply{}, err
	}
	v, err := view(s.backend.Rotate(r.ctx, r.caller, r.name))
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

func (s *Server) settings(r *call) (reply, error) {
	var b wire.KeySettingsRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	v, err := view(s.backend.UpdateSettings(r.ctx, r.caller, r.name, b))
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

func (s *Server) sign(r *call) (reply, error) {
	var b wire.SignRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	res, err := s.backend.Sign(r.ctx, r.caller, r.name, b)
	if err != nil {
		return reply{}, err
	}
	if res.Confirmation != nil { // waiting for the holder (R-DC-1)
		r.fc.Set(fiber.HeaderLocation, "/v1/confirmations/"+res.Confirmation.ID)
		return reply{http.StatusAccepted, res}, nil
	}
	return ok(res)
}

func (s *Server) signBatch(r *call) (reply, error) {
	var b wire.SignBatchRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	switch {
	case len(b.Items) == 0:
		return reply{}, invalidArgument(`"items" must hold at least one sign request`)
	case len(b.Items) > MaxBatch:
		return reply{}, invalidArgument(`"items" holds more than 1000 sign requests; split the batch`)
	}
	reqs := b.Items
	res, err := s.backend.SignBatch(r.ctx, r.caller, r.name, reqs)
	if err != nil {
		return reply{}, err
	}
	if len(res) != len(reqs) {
		return reply{}, errors.New("api: backend returned a batch of the wrong length")
	}
	return ok(wire.SignBatchResult{Signatures: res})
}

func (s *Server) verify(r *call) (reply, error) {
	var b wire.VerifyRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	valid, err := s.backend.Verify(r.ctx, r.caller, r.name, b)
	if err != nil {
		return reply{}, err
	}
	return ok(wire.VerifyResult{Valid: valid})
}

func (s *Server) mac(r *call) (reply, error) {
	var b wire.MACRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	mac, version, err := s.backend.MAC(r.ctx, r.caller, r.name, b.Message)
	if err != nil {
		return reply{}, err
	}
	return ok(wire.MACResult{MAC: mac, Version: version})
}

func (s *Server) macVerify(r *call) (reply, error) {
	var b wire.VerifyMACRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	valid, err := s.backend.VerifyMAC(r.ctx, r.caller, r.name, b.Message, b.MAC)
	if err != nil {
		return reply{}, err
	}
	return ok(wire.VerifyResult{Valid: valid})
}

func (s *Server) encrypt(r *call) (reply, error) {
	var b wire.EncryptRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	ct, ver, err := s.backend.Encrypt(r.ctx, r.caller, r.name, b.Plaintext, b.AAD)
	if err != nil {
		return reply{}, err
	}
	return ok(wire.EncryptResult{Ciphertext: ct, Version: ver})
}

func (s *Server) decrypt(r *call) (reply, error) {
	var b wire.DecryptRequest
	if err := httpedge.Decode(r.fc, &b); err != nil {
		return reply{}, err
	}
	pt, err := s.backend.Decrypt(r.ctx, r.caller, r.name, b.Ciphertext, b.AAD)
	if err != nil {
		return reply{}, err
	}
	return ok(wire.DecryptResult{Plaintext: pt})
}

// defaultDataKeySize is the data key size when the request names none.
const defaultDataKeySize = 32

func (s *Server) dataKey(r *call) (reply, error) {
	var b wire.DataKeyRequest
	if err := httpedge.DecodeOptional(r.fc, &b); err != nil {
		return reply{}, err
	}
	size := defaultDataKeySize
	if b.Size != nil {
		size = *b.Size
	}
	if size != 16 && size != 24 && size != 32 {
		return reply{}, invalidArgument(`"size" must be 16, 24 or 32 (bytes)`)
	}
	dk, err := s.backend.DataKey(r.ctx, r.caller, r.name, size, b.AAD)
	if err != nil {
		return reply{}, err
	}
	return ok(dk)
}

func (s *Server) versionState(r *call) (reply, error) {
	ver, err := positiveInt("version", r.fc.Params("v"))
	if err != nil {
		return reply{}, err
	}
	action := wire.VersionAction(r.fc.Params("action"))
	var delay time.Duration
	switch action {
	case wire.ActionDisable, wire.ActionEnable, wire.ActionCancelDestroy:
		var none struct{}
		if err := httpedge.DecodeOptional(r.fc, &none); err != nil {
			return reply{}, err
		}
	case wire.ActionScheduleDestroy:
		var b wire.ScheduleDestroyRequest
		if err := httpedge.DecodeOptional(r.fc, &b); err != nil {
			return reply{}, err
		}
		delay = time.Duration(b.Delay)
	default:
		return reply{}, invalidArgument("action must be disable, enable, schedule-destroy or cancel-destroy")
	}
	v, err := view(s.backend.SetVersionState(r.ctx, r.caller, r.name, ver, action, delay))
	if err != nil {
		return reply{}, err
	}
	return ok(v)
}

func (s *Server) publicKey(r *call) (reply, error) {
	ver := 0 // primary
	if q := r.fc.Query("version"); q != "" {
		v, err := positiveInt("version", q)
		if err != nil {
			return reply{}, err
		}
		ver = v
	}
	res, err := s.backend.PublicKey(r.ctx, r.caller, r.name, ver)
	if err != nil {
		return reply{}, err
	}
	return ok(res)
}

// readyz answers 200 when Backend.Ready succeeds, else 503 with the
// error's code (token_unavailable, store_unavailable, …).
func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), readyTimeout)
	defer cancel()
	err := s.backend.Ready(ctx)
	tokens := tokenViews(s.backend.Stats())
	if err == nil {
		if tokens != nil {
			return c.JSON(fiber.Map{"status": "ready", "tokens": tokens})
		}
		return c.JSON(fiber.Map{"status": "ready"})
	}
	_, code, message, internal := classify(err)
	if internal {
		httpedge.Logger(c).Error("readiness check failed", "err", err)
		code, message = codeNotReady, "not ready"
	} else {
		httpedge.Logger(c).Warn("not ready", "err", err)
	}
	if tokens != nil {
		return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{"error": errorDetail{Code: code, Message: message}, "tokens": tokens})
	}
	return c.Status(http.StatusServiceUnavailable).JSON(errorBody{Error: errorDetail{Code: code, Message: message}})
}
