package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testToken = "0123456789abcdef0123"

func apiServer(t *testing.T) (*Server, *httptest.Server) {
	topo := testbed(t, "failover.yaml")
	ff := newFakeFabric(topo, 1)
	s := startServer(t, topo, ff, ServerOptions{})
	hs := httptest.NewServer(s.Handler(testToken))
	t.Cleanup(hs.Close)
	return s, hs
}

func call(t *testing.T, hs *httptest.Server, method, path, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, hs.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s %s: answer %q is not JSON", method, path, data)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func TestAPIErrors(t *testing.T) {
	s, hs := apiServer(t)
	big := `{"members": [` + strings.Repeat("1,", MaxBodyBytes/2) + `1]}`
	cases := []struct {
		method, path, token, body string
		status                    int
		class                     string
	}{
		{"GET", "/v1/status", "", "", 401, "unauthorized"},
		{"GET", "/v1/status", "wrong-token-wrong-token", "", 401, "unauthorized"},
		{"GET", "/v1/status", testToken + "x", "", 401, "unauthorized"},
		{"PUT", "/v1/groups/abc", testToken, `{"members": [1]}`, 400, "bad_id"},
		{"PUT", "/v1/groups/4294967296", testToken, `{"members": [1]}`, 400, "bad_id"},
		{"PUT", "/v1/groups/-1", testToken, `{"members": [1]}`, 400, "bad_id"},
		{"PUT", "/v1/groups/1", testToken, `{"members": [70000]}`, 400, "bad_member"},
		{"PUT", "/v1/groups/1", testToken, `{"members": [5]}`, 400, "bad_member"},
		{"POST", "/v1/groups/1/members", testToken, `{"members": []}`, 400, "bad_member"},
		{"PUT", "/v1/groups/1", testToken, `{"members": "1-4"}`, 400, "bad_body"},
		{"PUT", "/v1/groups/1", testToken, `{"members": [1], "colour": 2}`, 400, "bad_body"},
		{"PUT", "/v1/groups/1", testToken, `{}`, 400, "bad_body"},
		{"PUT", "/v1/groups/1", testToken, ``, 400, "bad_body"},
		{"PUT", "/v1/groups/1", testToken, `{"members": [1]} {}`, 400, "bad_body"},
		{"PUT", "/v1/groups/1", testToken, big, 413, "too_large"},
		{"GET", "/v1/groups/5", testToken, "", 404, "unknown_group"},
		{"DELETE", "/v1/groups/5", testToken, "", 404, "unknown_group"},
		{"DELETE", "/v1/groups/5/members", testToken, `{"members": [1]}`, 404, "unknown_group"},
		{"GET", "/v1/routes", testToken, "", 404, "unknown_switch"},
		{"GET", "/v1/routes?switch=leaf9", testToken, "", 404, "unknown_switch"},
		{"PATCH", "/v1/groups/1", testToken, "", 405, "method_not_allowed"},
		{"POST", "/v1/status", testToken, "", 405, "method_not_allowed"},
		{"GET", "/v2/status", testToken, "", 404, "not_found"},
	}
	want := map[string]uint64{}
	for _, c := range cases {
		status, m, hdr := call(t, hs, c.method, c.path, c.token, c.body)
		if status != c.status || m["class"] != c.class || m["error"] == "" {
			t.Errorf("%s %s %.40q: %d %v, want %d %s", c.method, c.path, c.body, status, m, c.status, c.class)
		}
		if status == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
		want[c.class]++
	}
	for i, class := range apiClasses {
		if got := s.apiErrs[i].Load(); got != want[class] {
			t.Errorf("api errors %s: %d, want %d", class, got, want[class])
		}
	}
	if len(s.Groups()) != 0 {
		t.Errorf("a refused request created a group: %v", s.Groups())
	}
}

func TestAPIGroupsAndStatus(t *testing.T) {
	_, hs := apiServer(t)
	status, m, _ := call(t, hs, "PUT", "/v1/groups/7", testToken, `{"members": [4, 1, 2]}`)
	if status != 200 || m["id"].(float64) != 7 || len(m["members"].([]any)) != 3 {
		t.Fatalf("PUT: %d %v", status, m)
	}
	status, m, _ = call(t, hs, "POST", "/v1/groups/7/members", testToken, `{"members": [3]}`)
	if status != 200 || len(m["members"].([]any)) != 4 {
		t.Fatalf("POST members: %d %v", status, m)
	}
	status, m, _ = call(t, hs, "DELETE", "/v1/groups/7/members", testToken, `{"members": [1, 2]}`)
	if status != 200 || len(m["members"].([]any)) != 2 {
		t.Fatalf("DELETE members: %d %v", status, m)
	}
	status, m, _ = call(t, hs, "GET", "/v1/groups", testToken, "")
	if gs := m["groups"].([]any); status != 200 || len(gs) != 1 {
		t.Fatalf("GET groups: %d %v", status, m)
	}
	if status, _, _ := call(t, hs, "DELETE", "/v1/groups/7", testToken, ""); status != 204 {
		t.Fatalf("DELETE group: %d", status)
	}
	status, m, _ = call(t, hs, "GET", "/v1/status", testToken, "")
	if sws := m["switches"].([]any); status != 200 || len(sws) != 4 {
		t.Fatalf("status: %d %v", status, m)
	}
	status, m, _ = call(t, hs, "GET", "/v1/routes?switch=leaf1", testToken, "")
	if rs := m["routes"].([]any); status != 200 || len(rs) != 4 || rs[0].(map[string]any)["primary"] != "p1" {
		t.Fatalf("routes: %d %v", status, m)
	}
}

func TestParseAPIAddr(t *testing.T) {
	for _, ok := range []string{"unix:/run/x.sock", "127.0.0.1:8080", "[::1]:0", "localhost:9000", "127.1.2.3:1"} {
		if _, _, err := ParseAPIAddr(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:80", ":80", "10.0.0.1:80", "[::]:80", "example.com:80", "unix:", "unix:rel.sock", "127.0.0.1", "127.0.0.1:99999"} {
		if _, _, err := ParseAPIAddr(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	os.WriteFile(p, []byte(testToken+"\n"), 0o600)
	if tok, err := ReadToken(p); err != nil || tok != testToken {
		t.Fatalf("%q %v", tok, err)
	}
	os.WriteFile(p, []byte("short\n"), 0o600)
	if _, err := ReadToken(p); err == nil {
		t.Fatal("short token accepted")
	}
	if _, err := ReadToken(filepath.Join(dir, "none")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestUnixSocketAndClient(t *testing.T) {
	topo := testbed(t, "failover.yaml")
	ff := newFakeFabric(topo, 1)
	s := startServer(t, topo, ff, ServerOptions{})
	sock := filepath.Join(t.TempDir(), "run", "control.sock")
	// A stale socket file (no server behind it) is replaced.
	os.MkdirAll(filepath.Dir(sock), 0o700)
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := ListenAPI("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeAPI(ctx, ln, "") }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if _, err := ListenAPI("unix:"+sock, ""); err == nil || !strings.Contains(err.Error(), "another control process") {
		t.Fatalf("second listener: %v", err)
	}
	if _, err := ListenAPI("127.0.0.1:0", ""); err == nil {
		t.Fatal("TCP without a token accepted")
	}

	c, err := NewClient("unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g, err := c.SetGroup(ctx, 3, []uint16{1, 2}); err != nil || !slices.Equal(g.Members, []uint16{1, 2}) {
		t.Fatalf("SetGroup %+v %v", g, err)
	}
	if g, err := c.AddMembers(ctx, 3, []uint16{4}); err != nil || !slices.Equal(g.Members, []uint16{1, 2, 4}) {
		t.Fatalf("AddMembers %+v %v", g, err)
	}
	if g, err := c.RemoveMembers(ctx, 3, []uint16{2}); err != nil || !slices.Equal(g.Members, []uint16{1, 4}) {
		t.Fatalf("RemoveMembers %+v %v", g, err)
	}
	if g, err := c.Group(ctx, 3); err != nil || g.ID != 3 {
		t.Fatalf("Group %+v %v", g, err)
	}
	if gs, err := c.Groups(ctx); err != nil || len(gs) != 1 {
		t.Fatalf("Groups %+v %v", gs, err)
	}
	if st, err := c.Status(ctx); err != nil || len(st.Switches) != 4 {
		t.Fatalf("Status %+v %v", st, err)
	}
	if v, err := c.Routes(ctx, "spine1"); err != nil || len(v.Routes) != 4 || !v.Served {
		t.Fatalf("Routes %+v %v", v, err)
	}
	if err := c.DeleteGroup(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var ce *ClientError
	if err := c.DeleteGroup(ctx, 3); !errors.As(err, &ce) || ce.Status != 404 || ce.Class != "unknown_group" {
		t.Fatalf("second delete: %v", err)
	}
}

func TestTokenOverTCP(t *testing.T) {
	_, hs := apiServer(t)
	addr := strings.TrimPrefix(hs.URL, "http://")
	c, _ := NewClient(addr, testToken)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad, _ := NewClient(addr, "nope-nope-nope-nope")
	var ce *ClientError
	if _, err := bad.Status(context.Background()); !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
}
