package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/token/l10n"
)

// catalogued are bankcli's files: every human-readable text of each goes
// through the catalogue.
var catalogued = []string{"main.go", "commands.go", "api.go", "secret.go", "files.go", "captcha.go", "staff.go", "customer.go"}

// consts are the package's string constants (staffFlagHelp), so that a
// key passed by name counts as used, and a flag help passed by name
// without text() is caught like a bare literal.
var consts = map[string]string{}

// through are the functions whose first argument is a catalogue key.
var through = map[string]bool{"tr": true, "text": true, "printf": true, "eprintf": true, "errorf": true, "usageErr": true}

// direct are the calls that would print or return a text without the
// catalogue.
var direct = map[string]bool{"Printf": true, "Print": true, "Println": true, "Fprintf": true, "Fprint": true, "Fprintln": true, "Errorf": true, "New": true, "Sprintf": true}

var (
	verbs = regexp.MustCompile(`%[-+# 0-9.*]*[a-zA-Z]`)
	words = regexp.MustCompile(`[A-Za-z]{2,}`)
)

// TestCatalogueComplete reads bankcli's files: every key given to tr,
// printf, errorf, usageErr, … has a Chinese text; no English text is
// printed or returned around the catalogue; every command's brief has
// one, as has every flag's help; and the catalogue holds no key nobody
// uses.
func TestCatalogueComplete(t *testing.T) {
	fset := token.NewFileSet()
	used := map[string]bool{}
	var files []*ast.File
	for _, f := range catalogued {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file)
		for _, d := range file.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					v := spec.(*ast.ValueSpec)
					for i, name := range v.Names {
						if i < len(v.Values) {
							if s, ok := literal(v.Values[i]); ok {
								consts[name.Name] = s
							}
						}
					}
				}
			}
		}
	}
	for _, file := range files {
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			var name string
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && (x.Name == "fmt" || x.Name == "errors") {
					name = "fmt." + fn.Sel.Name
				} else if strings.HasSuffix(fn.Sel.Name, "Var") {
					name = fn.Sel.Name // flag definitions: fs.StringVar(&v, name, default, help)
				}
			}
			arg := 0
			if name == "fmt.Fprintf" || name == "fmt.Fprint" || name == "fmt.Fprintln" {
				arg = 1
			}
			if arg >= len(call.Args) {
				return true
			}
			if strings.HasSuffix(name, "Var") && len(call.Args) == 4 {
				if _, bare := literal(call.Args[3]); bare {
					t.Errorf("%s: a flag's help is not through the catalogue", fset.Position(call.Pos()))
				}
				return true
			}
			s, ok := literal(call.Args[arg])
			if !ok {
				return true
			}
			pos := fset.Position(call.Pos())
			switch {
			case through[name]:
				used[s] = true
				if texts.Untranslated(s) != nil {
					t.Errorf("%s: %q has no Chinese text", pos, s)
				}
			case strings.HasPrefix(name, "fmt.") && direct[strings.TrimPrefix(name, "fmt.")]:
				if words.MatchString(verbs.ReplaceAllString(s, "")) {
					t.Errorf("%s: %s(%q) prints or returns English around the catalogue", pos, name, s)
				}
			}
			return true
		})
	}
	for _, c := range commands {
		used[c.brief] = true
		if texts.Untranslated(c.brief) != nil {
			t.Errorf("command brief %q has no Chinese text", c.brief)
		}
	}
	for _, k := range texts.Keys() {
		if !used[k] && !strings.Contains(k, "%w") {
			t.Errorf("catalogue key %q is used nowhere", k)
		}
	}
	if len(used) < 60 {
		t.Fatalf("only %d keys found: the scan is broken", len(used))
	}
}

// literal is a string literal, a string constant of the package, or a
// concatenation of them.
func literal(e ast.Expr) (string, bool) {
	switch v := e.(type) {
	case *ast.Ident:
		s, ok := consts[v.Name]
		return s, ok
	case *ast.BasicLit:
		if v.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(v.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		a, ok1 := literal(v.X)
		b, ok2 := literal(v.Y)
		return a + b, ok1 && ok2 && v.Op == token.ADD
	}
	return "", false
}

// TestLanguage: LANG picks the language; the bank is asked in it.
func TestLanguage(t *testing.T) {
	saved := lang
	defer func() { lang = saved }()
	for env, want := range map[string]string{"zh_CN.UTF-8": "zh-CN", "en_US.UTF-8": "en", "": "zh-CN", "C": "zh-CN"} {
		lang = l10n.FromEnv(func(k string) string {
			if k == "LANG" {
				return env
			}
			return ""
		})
		if acceptLanguage() != want {
			t.Errorf("LANG=%q: Accept-Language %s, want %s", env, acceptLanguage(), want)
		}
	}
	lang = l10n.Chinese
	if got := tr("SMS code: "); got != "短信验证码：" {
		t.Fatalf("Chinese prompt %q", got)
	}
	e := &apiError{Status: 401, Code: "login_failed", Message: "登录名或密码错误", RequestID: "abc123def456"}
	if got := e.Error(); got != "登录名或密码错误（login_failed, HTTP 401, 请求编号 abc123def456）" {
		t.Fatalf("error %q", got)
	}
	lang = l10n.English
	if got := e.Error(); got != "登录名或密码错误 (login_failed, HTTP 401, request id abc123def456)" {
		t.Fatalf("error %q", got)
	}
}
