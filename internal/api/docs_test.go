package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// docs/API.md names every route the server registers (method and path on
// one line), every peer route and every error code of apischema, so the
// reference cannot fall behind the code.
func TestAPIDocCoversRoutesAndCodes(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "API.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	documented := func(method, path string) bool {
		for _, l := range lines {
			if strings.Contains(l, path) && strings.Contains(l, method) {
				return true
			}
		}
		return false
	}
	routes := stringArgs(t, ".", "HandleFunc")
	if len(routes) < 40 {
		t.Fatalf("found %d routes in the package's source, want the server's (40 or more)", len(routes))
	}
	for _, r := range routes {
		method, path, ok := strings.Cut(r, " ")
		if !ok {
			continue // the catch-all "/"
		}
		if !documented(method, path) {
			t.Errorf("docs/API.md does not document %s %s", method, path)
		}
	}
	for _, r := range constValues(t, filepath.Join("..", "apischema", "routes.go"), "Peer") {
		if r != "/peer/" && !strings.Contains(string(doc), "`POST "+r+"`") && !strings.Contains(string(doc), "`GET "+r+"`") {
			t.Errorf("docs/API.md does not document the peer route %s", r)
		}
	}
	codes := constValues(t, filepath.Join("..", "apischema", "codes.go"), "Code")
	if len(codes) < 40 {
		t.Fatalf("found %d error codes in apischema, want 40 or more", len(codes))
	}
	for _, c := range codes {
		if !strings.Contains(string(doc), "`"+c+"`") {
			t.Errorf("docs/API.md does not document the error code %s", c)
		}
	}
}

// stringArgs is the first argument, where it is a string literal, of
// every call to a method named fn in the non-test Go files of dir.
func stringArgs(t *testing.T, dir, fn string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != fn {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out
}

// constValues is the string value of every constant whose name starts
// with prefix in the Go file path.
func constValues(t *testing.T, path, prefix string) []string {
	t.Helper()
	af, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range af.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, sp := range gd.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						out = append(out, s)
					}
				}
			}
		}
	}
	return out
}

// docs/API.md names every JSON key of every request and response type of
// apischema (as "key" in an example or `key` in the text), so a field
// added to a type is documented with it.
func TestAPIDocCoversJSONKeys(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "API.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("..", "apischema", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(node ast.Node) bool {
			ts, ok := node.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return false
			}
			for _, fld := range st.Fields.List {
				if fld.Tag == nil {
					continue
				}
				tag, err := strconv.Unquote(fld.Tag.Value)
				if err != nil {
					t.Fatalf("%s: tag %s: %v", ts.Name.Name, fld.Tag.Value, err)
				}
				key, _, _ := strings.Cut(reflectTag(tag, "json"), ",")
				if key == "" || key == "-" {
					continue
				}
				n++
				if !strings.Contains(string(doc), `"`+key+`"`) && !strings.Contains(string(doc), "`"+key+"`") {
					t.Errorf("docs/API.md does not document the key %q of apischema.%s", key, ts.Name.Name)
				}
			}
			return false
		})
	}
	if n < 100 {
		t.Fatalf("found %d JSON keys in apischema, want its types' (100 or more)", n)
	}
}

// reflectTag is the value of key in a struct tag.
func reflectTag(tag, key string) string {
	for tag != "" {
		tag = strings.TrimLeft(tag, " ")
		name, rest, ok := strings.Cut(tag, `:"`)
		if !ok {
			return ""
		}
		val, after, ok := strings.Cut(rest, `"`)
		if !ok {
			return ""
		}
		if name == key {
			return val
		}
		tag = after
	}
	return ""
}
