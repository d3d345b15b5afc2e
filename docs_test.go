package wayfinder_test

// The docs' code: every ```go block of README.md and docs/*.md compiles
// (TestDocSnippetsCompile), the README's server and client snippets run
// (Example_readme, whose body TestREADMESnippetsRun compares with the
// README), and mem:// works without a blank import (TestMemoryIsDefault).

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wayfinder-rpc/wayfinder/hello"
	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/internal/testing/leak"
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
	"github.com/wayfinder-rpc/wayfinder/server"
	// No registry/memory here: the README's snippets must work without it.
)

func TestMain(m *testing.M) {
	leak.VerifyTestMain(m, func() { resolver.DefaultCache().Close() })
}

// readme is the README's two snippets under "In code", verbatim between
// the markers (TestREADMESnippetsRun checks), in a function that returns
// an error as the README says.
func readme(ctx context.Context) error {
	// README: server
	reg, err := registry.Open(ctx, "mem://") // or "consul://127.0.0.1:8500", "etcd://127.0.0.1:2379"
	if err != nil {
		return err
	}
	defer reg.Close()
	srv, err := server.New(reg, "hello", server.WithZone("eu-1a"))
	if err != nil {
		return err
	}
	hellopb.RegisterHelloServiceServer(srv.GRPC(), &hello.Server{Name: "a"})
	if err := srv.Start(ctx); err != nil { // listen, serve, SERVING, then register
		return err
	}
	defer srv.Stop(context.Background()) // NOT_SERVING, deregister, wait, GracefulStop
	// README: client
	cc, err := resolver.NewClient("mem:///hello",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		return err
	}
	defer cc.Close()
	reply, err := hellopb.NewHelloServiceClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "you", Num1: 1, Num2: 2})
	if err != nil {
		return err
	}
	fmt.Println(reply.GetMessage()) // Hello you, from a
	// README: end
	return nil
}

func Example_readme() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := readme(ctx); err != nil {
		fmt.Println(err)
	}
	// Output: Hello you, from a
}

// TestREADMESnippetsRun checks that readme, which Example_readme runs,
// is the README's server and client snippets as they are written.
func TestREADMESnippetsRun(t *testing.T) {
	src, err := os.ReadFile("docs_test.go")
	if err != nil {
		t.Fatal(err)
	}
	part := func(from, to string) string {
		s := string(src)
		i, j := strings.Index(s, "\t// README: "+from+"\n"), strings.Index(s, "\t// README: "+to+"\n")
		if i < 0 || j < i {
			t.Fatalf("docs_test.go: no README markers %q, %q", from, to)
		}
		s = s[i+len("\t// README: "+from+"\n") : j]
		return regexp.MustCompile(`(?m)^\t`).ReplaceAllString(s, "")
	}
	var blocks []string
	for _, sn := range snippets(t, "README.md") {
		blocks = append(blocks, sn.code)
	}
	for _, want := range []string{part("server", "client"), part("client", "end")} {
		if !slices.Contains(blocks, want) {
			t.Errorf("README.md has no ```go block\n%s\n(the code Example_readme runs); its blocks:\n%s", want, strings.Join(blocks, "\n---\n"))
		}
	}
}

// TestMemoryIsDefault checks that the packages every program imports
// anyway register mem://, the documented default, so that no snippet
// needs a blank import of registry/memory.
func TestMemoryIsDefault(t *testing.T) {
	const memory = "github.com/wayfinder-rpc/wayfinder/registry/memory"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./server", "./resolver", "./app").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(l, " ")
		if !slices.Contains(strings.Fields(deps), memory) {
			t.Errorf("%s does not import %s: mem:// would need a blank import", pkg, memory)
		}
	}
}

type snippet struct {
	file string // relative to the module root, such as "docs/etcd.md"
	line int    // the first line of code, after the ```go fence
	code string
}

func (s snippet) String() string { return fmt.Sprintf("%s:%d", s.file, s.line) }

var fence = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

// snippets returns file's ```go blocks.
func snippets(t *testing.T, file string) []snippet {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []snippet
	for _, m := range fence.FindAllSubmatchIndex(b, -1) {
		out = append(out, snippet{file: filepath.ToSlash(file), line: bytes.Count(b[:m[2]], []byte("\n")) + 1, code: string(b[m[2]:m[3]])})
	}
	return out
}

// packages are the names a snippet may use without importing them.
var packages = map[string]string{
	"app":          "github.com/wayfinder-rpc/wayfinder/app",
	"custom":       "github.com/wayfinder-rpc/wayfinder/balancer/custom",
	"hash":         "github.com/wayfinder-rpc/wayfinder/balancer/hash",
	"lbmetrics":    "github.com/wayfinder-rpc/wayfinder/balancer/lbmetrics",
	"route":        "github.com/wayfinder-rpc/wayfinder/balancer/route",
	"debug":        "github.com/wayfinder-rpc/wayfinder/debug",
	"hello":        "github.com/wayfinder-rpc/wayfinder/hello",
	"hellopb":      "github.com/wayfinder-rpc/wayfinder/hello/hellopb",
	"registry":     "github.com/wayfinder-rpc/wayfinder/registry",
	"consul":       "github.com/wayfinder-rpc/wayfinder/registry/consul",
	"etcd":         "github.com/wayfinder-rpc/wayfinder/registry/etcd",
	"kubernetes":   "github.com/wayfinder-rpc/wayfinder/registry/kubernetes",
	"resolver":     "github.com/wayfinder-rpc/wayfinder/resolver",
	"server":       "github.com/wayfinder-rpc/wayfinder/server",
	"orca":         "google.golang.org/grpc/orca",
	"fx":           "go.uber.org/fx",
	"grpc":         "google.golang.org/grpc",
	"credentials":  "google.golang.org/grpc/credentials",
	"insecure":     "google.golang.org/grpc/credentials/insecure",
	"health":       "google.golang.org/grpc/health",
	"metric":       "go.opentelemetry.io/otel/metric",
	"clientv3":     "go.etcd.io/etcd/client/v3",
	"endpoints":    "go.etcd.io/etcd/client/v3/naming/endpoints",
	"etcdresolver": "go.etcd.io/etcd/client/v3/naming/resolver",
	"context":      "context",
	"errors":       "errors",
	"fmt":          "fmt",
	"http":         "net/http",
	"log":          "log",
	"slog":         "log/slog",
	"rand":         "math/rand/v2",
	"slices":       "slices",
	"strings":      "strings",
	"time":         "time",
	"os":           "os",
	"net":          "net",
}

// variables are the names a snippet may use without declaring them, and
// their types; some differ by file.
func variables(sn snippet) map[string]string {
	v := map[string]string{
		"ctx":            "context.Context",
		"reg":            "registry.Registry",
		"cc":             "*grpc.ClientConn",
		"cfg":            "app.Config",
		"cli":            "*clientv3.Client",
		"creds":          "credentials.TransportCredentials",
		"endpoints":      "[]string",
		"healthServer":   "*health.Server",
		"inst":           "registry.Instance",
		"meterProvider":  "metric.MeterProvider",
		"userID":         "string",
		"addr":           "string",
		"newHelloServer": "func() app.Service",
	}
	switch sn.file {
	case "docs/consul.md":
		v["reg"] = "*consul.Registry"
	case "docs/etcd.md":
		v["reg"] = "*etcd.Registry"
	}
	// creds is transport credentials where a snippet wraps it in
	// grpc.WithTransportCredentials, and a dial option where it passes
	// it to a dial as it is.
	if strings.Contains(sn.code, "creds") && !strings.Contains(sn.code, "WithTransportCredentials(creds)") {
		v["creds"] = "grpc.DialOption"
	}
	return v
}

// program turns a snippet into a Go file of package pkg: its import
// lines go to the top, a block of declarations stays at the top level,
// and statements become the body of a function whose parameters are
// the undeclared variables it uses. Every variable the snippet declares
// at its top level is marked used (a fragment may end before it uses
// what it declares). Line directives make the compiler's messages point
// at the Markdown file.
func program(sn snippet, root, pkg string) (string, error) {
	var imports, body []string
	lines := strings.Split(strings.TrimSuffix(sn.code, "\n"), "\n")
	first := sn.line
	for i, l := range lines {
		if strings.HasPrefix(l, "import ") {
			imports = append(imports, strings.TrimPrefix(l, "import "))
			continue
		}
		if strings.TrimSpace(l) == "" && len(body) == 0 {
			continue
		}
		if len(body) == 0 {
			first = sn.line + i
		}
		body = append(body, l)
	}
	code := strings.Join(body, "\n")
	directive := fmt.Sprintf("//line %s:%d\n", filepath.Join(root, sn.file), first)

	// The names it uses: selectors of known packages, and free variables.
	vars := variables(sn)
	used := map[string]bool{}
	params := map[string]bool{}
	var s scanner.Scanner
	fset := token.NewFileSet()
	s.Init(fset.AddFile("", -1, len(code)), []byte(code), nil, 0)
	var prev string
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			break
		}
		if tok == token.PERIOD && packages[prev] != "" {
			used[prev] = true
		}
		if tok == token.IDENT {
			if _, ok := vars[lit]; ok {
				params[lit] = true
			}
		}
		prev = ""
		if tok == token.IDENT {
			prev = lit
		}
	}
	var sig []string
	for _, name := range slices.Sorted(maps.Keys(params)) {
		sig = append(sig, name+" "+vars[name])
		for _, p := range regexp.MustCompile(`[a-z][a-z0-9]*\.`).FindAllString(vars[name], -1) {
			used[strings.TrimSuffix(p, ".")] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		imports = append(imports, fmt.Sprintf("%s %q", name, packages[name]))
	}
	head := "package " + pkg + "\n\nimport (\n" + strings.Join(imports, "\n") + "\n)\n\n"

	// Declarations stay at the top level.
	if _, err := parser.ParseFile(token.NewFileSet(), "", "package p\n"+code, 0); err == nil {
		return head + directive + code + "\n", nil
	}

	// Statements: parse them in a function to see what they declare
	// and how they return.
	const open = "func snippet() {\n"
	probe := "package p\n" + open + code + "\n}\n"
	pf := token.NewFileSet()
	f, err := parser.ParseFile(pf, "", probe, 0)
	if err != nil {
		return "", fmt.Errorf("%v: neither declarations nor statements: %v", sn, err)
	}
	fn := f.Decls[0].(*ast.FuncDecl)
	offset := len("package p\n" + open)
	type insert struct {
		at   int
		text string
	}
	var inserts []insert
	for _, st := range fn.Body.List {
		var names []string
		switch st := st.(type) {
		case *ast.AssignStmt:
			if st.Tok == token.DEFINE {
				for _, e := range st.Lhs {
					names = append(names, e.(*ast.Ident).Name)
				}
			}
		case *ast.DeclStmt:
			if gd, ok := st.Decl.(*ast.GenDecl); ok && gd.Tok == token.VAR {
				for _, sp := range gd.Specs {
					for _, n := range sp.(*ast.ValueSpec).Names {
						names = append(names, n.Name)
					}
				}
			}
		}
		var text string
		for _, n := range names {
			if n != "_" {
				text += "; _ = " + n
			}
		}
		if text != "" {
			inserts = append(inserts, insert{pf.Position(st.End()).Offset - offset, text})
		}
	}
	sort.Slice(inserts, func(i, j int) bool { return inserts[i].at > inserts[j].at })
	for _, in := range inserts {
		code = code[:in.at] + in.text + code[in.at:]
	}
	result := ""
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.ReturnStmt:
			if len(n.Results) > 0 {
				result = " error"
			}
		}
		return true
	})
	// The snippet is a block of its own, so that it may declare with :=
	// what the parameters also name.
	tail := "\n}\n}\n"
	last := fn.Body.List[len(fn.Body.List)-1]
	if _, ok := last.(*ast.ReturnStmt); result != "" && !ok {
		tail = "\n}\nreturn nil\n}\n"
	}
	return head + "func snippet(" + strings.Join(sig, ", ") + ")" + result + " {\n{\n" + directive + code + tail, nil
}

// TestDocSnippetsCompile compiles and vets every ```go block of
// README.md and docs/*.md, each as a package of a module made for the
// purpose with the requirements of the module it documents (this one,
// or registry/kubernetes for the snippets that import it), so that the
// build reuses the cache of the modules' own tests. One go vet per
// module builds them all.
func TestDocSnippetsCompile(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"README.md"}, files...)
	modules := map[string]string{} // module dir (relative) -> temp module dir
	count := 0
	for _, file := range files {
		for _, sn := range snippets(t, file) {
			mod := "."
			if strings.Contains(sn.code, "registry/kubernetes") {
				mod = "registry/kubernetes"
			}
			dir, ok := modules[mod]
			if !ok {
				dir = snippetModule(t, root, mod)
				modules[mod] = dir
			}
			pkg := fmt.Sprintf("%s_%d", strings.NewReplacer("docs/", "", ".md", "", "-", "_", "/", "_").Replace(strings.ToLower(sn.file)), sn.line)
			src, err := program(sn, root, pkg)
			if err != nil {
				t.Error(err)
				continue
			}
			if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, pkg, "snippet.go"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			count++
		}
	}
	if count < 20 {
		t.Fatalf("found %d ```go blocks in %s; want at least 20 (is the fence pattern right?)", count, strings.Join(files, ", "))
	}
	for _, mod := range slices.Sorted(maps.Keys(modules)) {
		cmd := exec.Command("go", "vet", "./...")
		cmd.Dir = modules[mod]
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("a ```go block does not compile (module %s; generated code in %s):\n%s", mod, modules[mod], out)
		}
	}
}

// snippetModule makes a module that requires what the module at
// root/mod requires, at the same versions, with that module replaced by
// its directory.
func snippetModule(t *testing.T, root, mod string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(root, mod)
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	path := regexp.MustCompile(`(?m)^module (\S+)$`).FindSubmatch(gomod)
	if path == nil {
		t.Fatalf("%s/go.mod: no module line", mod)
	}
	text := regexp.MustCompile(`(?m)^module \S+$`).ReplaceAllString(string(gomod), "module docsnippets")
	// Relative replacements are relative to the module's directory.
	text = regexp.MustCompile(`=> (\.\S*)`).ReplaceAllStringFunc(text, func(m string) string {
		return "=> " + filepath.Join(src, strings.TrimPrefix(m, "=> "))
	})
	text += fmt.Sprintf("\nrequire %s v0.0.0\n\nreplace %s => %s\n", path[1], path[1], src)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
