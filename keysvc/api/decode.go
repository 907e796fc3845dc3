package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/keyward/keyward/keysvc/wire/httpedge"
)

// decodeBody reads the request body strictly into v (httpedge.Decode:
// one JSON object; unknown, repeated or case-mismatched names, bad UTF-8
// and trailing data refused). An empty body is allowed only when
// optional is true (v keeps its zero value).
func decodeBody(c *fiber.Ctx, v any, optional bool) error {
	if optional {
		return httpedge.DecodeOptional(c, v)
	}
	return httpedge.Decode(c, v)
}

// decodeJSON is decodeBody's parser, on the raw body (fuzzed).
func decodeJSON(body []byte, v any, optional bool) error {
	return httpedge.DecodeBytes(body, v, optional)
}

// checkMediaType refuses a body that is not uncompressed UTF-8
// application/json (httpedge.CheckMediaType).
func checkMediaType(c *fiber.Ctx) error { return httpedge.CheckMediaType(c) }

// keyNamePattern is the grammar of key names; names appear in URLs,
// metrics labels and audit records, so they are kept plain.
var keyNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validKeyName(name string) error {
	if !keyNamePattern.MatchString(name) {
		return invalidArgument("key name must match ^[a-z0-9][a-z0-9._-]{0,63}$")
	}
	return nil
}

// positiveInt parses a decimal version number: 1, 2, … (at most 2^31-1).
func positiveInt(what, s string) (int, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil || v < 1 || strings.HasPrefix(s, "+") {
		return 0, invalidArgument(fmt.Sprintf("%s must be a positive integer", what))
	}
	return int(v), nil
}
