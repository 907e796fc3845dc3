package api

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// openAPI is the hand-written OpenAPI description of every route; a test
// checks it against the routes the server registers.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns a copy of the OpenAPI document served at /v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func serveOpenAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(openAPI)
}
