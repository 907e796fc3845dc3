package api_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/keyward/keyward/keysvc/api"
)

type oaParam struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type oaOperation struct {
	OperationID string                 `json:"operationId"`
	Parameters  []oaParam              `json:"parameters"`
	Responses   map[string]any         `json:"responses"`
	Security    *[]map[string][]string `json:"security"`
}

type oaDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Parameters      map[string]oaParam         `json:"parameters"`
		SecuritySchemes map[string]map[string]any  `json:"securitySchemes"`
		Schemas         map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T, e *env) (oaDoc, []byte) {
	t.Helper()
	r := e.req("GET", "/v1/openapi.json", "", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json = %d %s", r.status, r.header.Get("Content-Type"))
	}
	var d oaDoc
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	return d, r.body
}

// TestOpenAPICoversRoutes: every route the server registers is in the
// document, and every operation in the document is a route.
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newEnv(t)
	doc, _ := loadOpenAPI(t, e)
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	routes := map[string]bool{}
	for _, r := range e.srv.App().GetRoutes(true) {
		if r.Method == "HEAD" { // fiber adds HEAD beside each GET
			continue
		}
		routes[strings.ToLower(r.Method)+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for p, item := range doc.Paths {
		for m := range item {
			if slices.Contains(httpMethods, m) {
				documented[m+" "+p] = true
			}
		}
	}
	var v1 int
	for r := range routes {
		if strings.Contains(r, " /v1/") {
			v1++
		}
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for d := range documented {
		if !routes[d] {
			t.Errorf("openapi.json documents %s, which is not a route", d)
		}
	}
	if v1 != 23 {
		t.Errorf("%d /v1 routes, want 23", v1)
	}
}

// TestOpenAPIDocument checks the document's own consistency.
func TestOpenAPIDocument(t *testing.T) {
	e := newEnv(t)
	doc, raw := loadOpenAPI(t, e)
	if string(raw) != string(api.OpenAPI()) {
		t.Error("served document differs from api.OpenAPI()")
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	if doc.Components.SecuritySchemes["bearer"]["scheme"] != "bearer" || doc.Components.SecuritySchemes["mutualTLS"]["type"] != "mutualTLS" {
		t.Errorf("security schemes = %v", doc.Components.SecuritySchemes)
	}
	// Every $ref resolves.
	var all any
	_ = json.Unmarshal(raw, &all)
	var refs []string
	walk(all, func(k string, v any) {
		if s, ok := v.(string); ok && k == "$ref" {
			refs = append(refs, s)
		}
	})
	for _, ref := range refs {
		if resolve(all, ref) == nil {
			t.Errorf("$ref %s does not resolve", ref)
		}
	}
	// Every path template parameter is declared; unauthenticated routes
	// say so; operation ids are unique.
	ids := map[string]bool{}
	unauth := []string{"/healthz", "/readyz", "/v1/openapi.json"}
	tmpl := regexp.MustCompile(`\{([^}]+)\}`)
	for p, item := range doc.Paths {
		var shared []oaParam
		if raw, ok := item["parameters"]; ok {
			_ = json.Unmarshal(raw, &shared)
		}
		for m, rawOp := range item {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			var op oaOperation
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatal(err)
			}
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: operationId %q missing or repeated", m, p, op.OperationID)
			}
			ids[op.OperationID] = true
			if len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses", m, p)
			}
			declared := map[string]bool{}
			for _, prm := range append(shared, op.Parameters...) {
				if prm.Ref != "" {
					prm = doc.Components.Parameters[strings.TrimPrefix(prm.Ref, "#/components/parameters/")]
				}
				if prm.In == "path" {
					declared[prm.Name] = true
				}
			}
			for _, m := range tmpl.FindAllStringSubmatch(p, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter %s not declared", p, m[1])
				}
			}
			open := op.Security != nil && len(*op.Security) == 0
			if open != slices.Contains(unauth, p) {
				t.Errorf("%s %s: unauthenticated = %v", m, p, open)
			}
		}
	}
	// The error schema lists every code of the error table.
	var errSchema struct {
		Properties struct {
			Error struct {
				Properties struct {
					Code struct {
						Enum []string `json:"enum"`
					} `json:"code"`
				} `json:"properties"`
			} `json:"error"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(doc.Components.Schemas["Error"], &errSchema)
	codes := errSchema.Properties.Error.Properties.Code.Enum
	var missing []string
	for _, c := range api.ErrorTableCodes() {
		if !slices.Contains(codes, c) {
			missing = append(missing, c)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("Error.code enum lacks %v", missing)
	}
}

func walk(v any, f func(key string, v any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			f(k, c)
			walk(c, f)
		}
	case []any:
		for _, c := range x {
			walk(c, f)
		}
	}
}

func resolve(doc any, ref string) any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	cur := doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}
