package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzAPI sends the control API arbitrary JSON bodies on every route that
// takes one (and arbitrary group IDs): each answer is a status under 500
// with a JSON body, never a panic, and the server's groups stay valid.
func FuzzAPI(f *testing.F) {
	topo, err := LoadTopology(filepath.Join("..", "testbeds", "failover.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	// No Run: no ring is opened, so nothing is pushed; the API's checks
	// and the server's group state are what is fuzzed.
	ff := newFakeFabric(topo, 1)
	s, err := NewServer(topo, ServerOptions{RingDir: "/fake", Open: ff.open})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler(testToken)
	f.Add(uint8(0), "7", `{"members":[1,2]}`)
	f.Add(uint8(1), "7", `{"members":[3]}`)
	f.Add(uint8(2), "7", `{"members":[1]}`)
	f.Add(uint8(3), "7", ``)
	f.Add(uint8(4), "4294967295", `{"members":[65535]}`)
	f.Add(uint8(0), "-1", `{"members":[1e99]}`)
	f.Add(uint8(0), "8", `{"members":null,"x":[[[[[]]]]]}`)
	routes := []struct{ method, path string }{
		{"PUT", "/v1/groups/%s"},
		{"POST", "/v1/groups/%s/members"},
		{"DELETE", "/v1/groups/%s/members"},
		{"DELETE", "/v1/groups/%s"},
		{"GET", "/v1/groups/%s"},
		{"GET", "/v1/routes?switch=%s"},
	}
	f.Fuzz(func(t *testing.T, route uint8, id, body string) {
		if len(body) > 1<<16 || strings.ContainsAny(id, "/?#% \t\r\n") || id == "." || id == ".." {
			return // not one path segment (the mux redirects "." and "..")
		}
		r := routes[int(route)%len(routes)]
		req, err := http.NewRequest(r.method, strings.Replace(r.path, "%s", id, 1), strings.NewReader(body))
		if err != nil || path.Clean(req.URL.Path) != req.URL.Path {
			return // not a URL a client could send, or one the mux redirects
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: status %d: %s", r.method, req.URL, body, w.Code, w.Body)
		}
		if w.Code != http.StatusNoContent && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: status %d, body not JSON: %q", r.method, req.URL, body, w.Code, w.Body)
		}
		for _, g := range s.Groups() {
			for i, m := range g.Members {
				if !topo.IsReceiver(m) || i > 0 && g.Members[i-1] >= m {
					t.Fatalf("group %d members %v", g.ID, g.Members)
				}
			}
		}
	})
}
