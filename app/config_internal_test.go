package app

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestFieldsCoverConfig: every Config field has exactly one row in
// fields, and no flag or variable name is used twice, so a field added
// to Config without its row fails here rather than being silently
// unconfigurable.
func TestFieldsCoverConfig(t *testing.T) {
	var c Config
	base := reflect.ValueOf(&c).Elem()
	byAddr := map[uintptr]string{}
	for i := range base.NumField() {
		byAddr[base.Field(i).Addr().Pointer()] = base.Type().Field(i).Name
	}
	bound := map[string]string{}
	flags, envs := map[string]bool{}, map[string]bool{}
	for _, f := range fields {
		name, ok := byAddr[reflect.ValueOf(f.bind(&c)).Pointer()]
		if !ok {
			t.Errorf("row %s binds no Config field", f.env)
			continue
		}
		if prev, dup := bound[name]; dup {
			t.Errorf("Config.%s bound by %s and %s", name, prev, f.env)
		}
		bound[name] = f.env
		if flags[f.flag] || envs[f.env] {
			t.Errorf("flag -%s or variable %s used twice", f.flag, f.env)
		}
		flags[f.flag], envs[f.env] = true, true
		if !strings.HasPrefix(f.env, "WAYFINDER_") || f.help == "" {
			t.Errorf("row %s: want a WAYFINDER_ variable and help", f.env)
		}
	}
	for i := range base.NumField() {
		if name := base.Type().Field(i).Name; bound[name] == "" {
			t.Errorf("Config.%s has no row in fields", name)
		}
	}
}

// TestDocsListConfig: docs/fx.md lists every variable with its flag and
// default as the table has them, so the docs cannot drift from it.
func TestDocsListConfig(t *testing.T) {
	b, err := os.ReadFile("../docs/fx.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`WAYFINDER_") {
			continue
		}
		env := strings.Trim(strings.TrimSpace(cells[1]), "`")
		rows[env] = strings.TrimSpace(cells[2]) + " " + strings.TrimSpace(cells[3])
	}
	for _, f := range fields {
		def := "—"
		if f.def != "" {
			def = "`" + f.def + "`"
		}
		if want := "`-" + f.flag + "` " + def; rows[f.env] != want {
			t.Errorf("docs/fx.md row %s = %q, want %q", f.env, rows[f.env], want)
		}
		delete(rows, f.env)
	}
	for env := range rows {
		t.Errorf("docs/fx.md lists %s, which Config does not have", env)
	}
}
