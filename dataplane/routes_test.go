package dataplane

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const routesPorts = "name: r\nports:\n  - {name: p0, type: mem}\n  - {name: p1, type: mem}\n  - {name: p2, type: mem}\n"

// sameAsYAMLv3 loads a config by the flow-routes path and by yaml.v3 alone
// and checks they agree: both fail, or both give the same config and tables.
// It tells whether the flow-routes path read the routes.
func sameAsYAMLv3(t *testing.T, data []byte) (fast bool, err error) {
	t.Helper()
	c1, e1 := decodeConfig(data, "", true)
	c2, e2 := decodeConfig(data, "", false)
	if (e1 == nil) != (e2 == nil) {
		t.Fatalf("flow routes: %v; yaml.v3: %v\n%s", e1, e2, data)
	}
	if e1 != nil {
		if e1.Error() == "" {
			t.Fatal("empty error")
		}
		return false, e1
	}
	fast = len(c1.routeSets) > 0
	t1, e1 := TablesFromConfig(c1)
	t2, e2 := TablesFromConfig(c2)
	if (e1 == nil) != (e2 == nil) {
		t.Fatalf("tables: flow routes: %v; yaml.v3: %v\n%s", e1, e2, data)
	}
	if e1 != nil {
		return fast, e1
	}
	if !t1.Routes.Equal(t2.Routes) || !reflect.DeepEqual(t1.Groups, t2.Groups) {
		t.Fatalf("tables differ\n%s", data)
	}
	if c1.RouteEntries() != c2.RouteEntries() {
		t.Fatalf("%d route entries, yaml.v3 %d\n%s", c1.RouteEntries(), c2.RouteEntries(), data)
	}
	c1.Routes, c2.Routes, c1.routeSets, c2.routeSets = nil, nil, nil, nil
	if !reflect.DeepEqual(c1, c2) {
		t.Fatalf("configs differ: %+v\n%+v\n%s", c1, c2, data)
	}
	return fast, nil
}

func TestFlowRoutesMatchYAMLv3(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		fast bool // the flow-routes parser reads it
		bad  string
	}{
		{"plain", routesPorts + "routes:\n  - {receivers: \"1-4,7\", port: p0, backup: p1}\n  - {receivers: '9', port: p2}\n", true, ""},
		{"after groups", routesPorts + "routes:   # the fabric's\n- {port: p1, receivers: 1-3}\n\n  # a comment\n- {receivers: \" 5 , 6 - 8 \", backup: p0, port: p1}   # trailing\ngroups:\n  - {id: 7, members: \"1-2\"}\n", true, ""},
		{"crlf", strings.ReplaceAll(routesPorts+"routes:\n  - {receivers: \"1\", port: p0}\nworkers: 1\n", "\n", "\r\n"), true, ""},
		{"leading ---", "---\n" + routesPorts + "routes:\n  - {receivers: \"1\", port: p0}\n", true, ""},
		{"second document", routesPorts + "routes:\n  - {receivers: \"1\", port: p0}\n---\nname: other\n", true, ""},
		{"same receiver, same port: last backup", routesPorts + "routes:\n  - {receivers: \"1\", port: p0, backup: p1}\n  - {receivers: \"1\", port: p0, backup: p2}\n", true, ""},
		{"empty backup", routesPorts + "routes:\n  - {receivers: \"1\", port: p0, backup: \"\"}\n", true, ""},
		{"empty list", routesPorts + "routes:\nworkers: 1\n", true, ""},
		{"unknown port", routesPorts + "routes:\n  - {receivers: \"1\", port: p0}\n  - {receivers: \"2\", port: p9}\n", true, `routes[1] (line 8): unknown port "p9"`},
		{"backup is the port", routesPorts + "routes:\n  - {receivers: \"2\", port: p1, backup: p1}\n", true, `routes[0] (line 7): backup "p1" must be another configured port`},
		{"conflict", routesPorts + "routes:\n  - {receivers: \"1-3\", port: p0}\n  - {receivers: \"3\", port: p1}\n", true, "routes[1] (line 8): receiver 3 already routed to port p0"},
		{"unknown key elsewhere", routesPorts + "bogus: 1\nroutes:\n  - {receivers: \"1\", port: p0}\n", true, "field bogus not found"},
		// The rest goes to yaml.v3 whole.
		{"block form", routesPorts + "routes:\n  - receivers: \"1\"\n    port: p0\n", true, ""},
		{"block, marshal style", routesPorts + "routes:\n    - receivers: 1-4,7   # plain, commas and all\n      # a comment\n\n      backup: 'p1'\n      port: p0\n    - {receivers: \"9\", port: p2}\n    - port: p2\n      receivers: \"10\"\ngroups: []\n", true, ""},
		{"block, unknown port", routesPorts + "routes:\n- receivers: \"1\"\n  port: p0\n- receivers: \"2\"\n  port: p5\n", true, `routes[1] (line 9): unknown port "p5"`},
		{"block, key too far in", routesPorts + "routes:\n  - receivers: \"1\"\n     port: p0\n", false, "did not find expected"},
		{"block, no value", routesPorts + "routes:\n  - receivers: \"1\"\n    port:\n", false, `unknown port ""`},
		{"block, spaced plain", routesPorts + "routes:\n  - receivers: 1, 2\n    port: p0\n", false, ""},
		{"block, literal", routesPorts + "routes:\n  - receivers: |\n      1\n    port: p0\n", false, ""},
		{"block, nested", routesPorts + "routes:\n  - receivers: \"1\"\n    port: p0\n    - x\n", false, "did not find expected"},
		{"block, missing port", routesPorts + "routes:\n  - receivers: \"1\"\n", false, `unknown port ""`},
		{"unquoted list", routesPorts + "routes:\n  - {receivers: 1-4,7, port: p0}\n", false, "field 7 not found"},
		{"escape", routesPorts + "routes:\n  - {receivers: \"\\x31\", port: p0}\n", false, ""},
		{"null port", routesPorts + "routes:\n  - {receivers: \"1\", port: null}\n", false, `unknown port ""`},
		{"duplicate key", routesPorts + "routes:\n  - {receivers: \"1\", port: p0, port: p1}\n", false, "already defined"},
		{"signed id", routesPorts + "routes:\n  - {receivers: \"+1\", port: p0}\n", false, ""},
		{"id out of range", routesPorts + "routes:\n  - {receivers: \"65536\", port: p0}\n", false, "out of range"},
		{"ragged indent", routesPorts + "routes:\n  - {receivers: \"1\", port: p0}\n   - {receivers: \"2\", port: p0}\n", false, "did not find expected"},
		{"two routes keys", routesPorts + "routes:\n  - {receivers: \"1\", port: p0}\nroutes:\n  - {receivers: \"2\", port: p0}\n", false, "already defined"},
		{"anchor", routesPorts + "routes:\n  - &a {receivers: \"1\", port: p0}\n", false, ""},
		{"lone CR", routesPorts + "routes:\n  - {receivers: \"1\", port: p0} # x\r  - {receivers: \"2\", port: p1}\n", false, ""},
		{"not utf-8 comment", routesPorts + "routes:\n  # \xff\n  - {receivers: \"1\", port: p0}\n", false, "invalid"},
		{"inside a string", "name: \"a\nroutes:\n  - {receivers: \\\"1\\\", port: p0}\n b\"\nports: [{name: p0, type: mem}]\n", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fast, err := sameAsYAMLv3(t, []byte(tc.doc))
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Fatalf("error %v, want %q", err, tc.bad)
			}
			_, _, line, ok := splitFlowRoutes([]byte(tc.doc))
			if ok {
				rest, _, _, _ := splitFlowRoutes([]byte(tc.doc))
				ok = routesKeyIsTopLevel(rest, line)
			}
			if ok != tc.fast || err == nil && fast != tc.fast {
				t.Fatalf("flow-routes parser used: %v/%v, want %v", ok, fast, tc.fast)
			}
		})
	}
}

// writeRoutes writes a config with a routes file beside it.
func writeRoutes(t *testing.T, config, routes string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sw.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "routes.txt"), []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRoutesFile: a routes file gives the tables the same entries give as
// a YAML list, after the list's own entries.
func TestRoutesFile(t *testing.T) {
	path := writeRoutes(t, routesPorts+"routes:\n  - {receivers: \"100\", port: p2}\nroutes_file: routes.txt\n",
		"# receivers port backup\n1-4,7\tp0 p1\r\n\n  9   p2   # no backup\n10-12 p1 p0\n100 p2 p0\n12 p1")
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := TablesFromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseConfig([]byte(routesPorts + `routes:
  - receivers: "1-4,7"
    port: p0
    backup: p1
  - {receivers: "9", port: p2}
  - {receivers: "10-12", port: p1, backup: p0}
  - {receivers: "100", port: p2, backup: p0}
  - {receivers: "12", port: p1}
`))
	if err != nil {
		t.Fatal(err)
	}
	wt, err := TablesFromConfig(want)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Routes.Equal(wt.Routes) || got.Routes.Len() != 10 {
		t.Fatalf("routes file's tables differ from the YAML list's (%d routes)", got.Routes.Len())
	}
	if n := c.RouteEntries(); n != 6 {
		t.Errorf("%d route entries, want 6 (1 in the list, 5 in the file)", n)
	}
}

func TestRoutesFileErrors(t *testing.T) {
	for _, tc := range []struct{ routes, want string }{
		{"1 p0\n2\n", `routes.txt:2: want RECEIVERS PORT [BACKUP], got only "2"`},
		{"1 p0 p1 p2\n", "routes.txt:1: want RECEIVERS PORT [BACKUP], got more than 3 fields"},
		{"\n\n70000 p0\n", "routes.txt:3: receiver ID 70000 out of range 0-65535"},
		{"5-3 p0\n", "routes.txt:1: range 5-3 runs backwards"},
		{"1,,2 p0\n", `routes.txt:1: "" is not a receiver ID`},
		{"1, p0\n", "routes.txt:1: receiver list ends with a comma"},
		{"x p0\n", `routes.txt:1: "x" is not a receiver ID`},
		{"1 p0\n2 p7\n", `routes.txt:2: unknown port "p7"`},
		{"1 p0 p0\n", `routes.txt:1: backup "p0" must be another configured port`},
		{"1 p0 q\n", `routes.txt:1: backup "q" must be another configured port`},
		{"1-9 p0\n\n5 p1\n", "routes.txt:3: receiver 5 already routed to port p0"},
		{"1 p0\n" + strings.Repeat("9", 5000) + " p0\n", "routes.txt:2: line longer than 4096 bytes"},
		{strings.Repeat("9", 70000), "routes.txt:1: line longer than 4096 bytes"},
	} {
		path := writeRoutes(t, routesPorts+"routes_file: routes.txt\n", tc.routes)
		c, err := LoadConfig(path)
		if err == nil {
			_, err = TablesFromConfig(c)
		}
		want := filepath.Join(filepath.Dir(path), tc.want)
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%.40q: error %v, want ...%s", tc.routes, err, want)
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.txt"), "no such file"},
		{dir, "is a directory"},
	} {
		_, err := ParseConfig([]byte(routesPorts + "routes_file: " + tc.file + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "routes_file") {
			t.Errorf("routes_file %s: error %v, want %q", tc.file, err, tc.want)
		}
	}
}

// TestMarshalledRoutesLoadFast: a config written with yaml.Marshal (what the
// lab's fabric writer does) has its routes read by the flow-routes parser,
// with the tables of the config it was written from.
func TestMarshalledRoutesLoadFast(t *testing.T) {
	c, err := ParseConfig([]byte(routesPorts))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		e := RouteEntry{Receivers: fmt.Sprintf("%d-%d,%d", 3*i, 3*i+1, 3*i+2), Port: fmt.Sprintf("p%d", i%3)}
		if i%4 != 0 {
			e.Backup = fmt.Sprintf("p%d", (i+1)%3)
		}
		c.Routes = append(c.Routes, e)
	}
	want, err := TablesFromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := sameAsYAMLv3(t, out)
	if err != nil || !fast {
		t.Fatalf("marshalled config: flow routes parser %v, error %v\n%.300s", fast, err, out)
	}
	back, _ := ParseConfig(out)
	got, _ := TablesFromConfig(back)
	if !got.Routes.Equal(want.Routes) || back.RouteEntries() != 500 {
		t.Fatalf("marshalled config's tables differ (%d entries)", back.RouteEntries())
	}
}
