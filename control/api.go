// The HTTP/JSON API of the control process. In: requests on a Unix socket
// (mode 0600: the file mode is the access control) or on a loopback TCP
// port with a bearer token; out: JSON answers, and group changes handed to
// the Server, which pushes them to the switches.
//
//	GET    /v1/status                  switches, generations, boot IDs, link states
//	GET    /v1/routes?switch=X         X's routes with port names
//	GET    /v1/groups                  every group
//	GET    /v1/groups/{id}             one group
//	PUT    /v1/groups/{id}             {"members": [1,2,3]}: create or replace
//	DELETE /v1/groups/{id}             delete
//	POST   /v1/groups/{id}/members     {"members": [...]}: add (creates the group)
//	DELETE /v1/groups/{id}/members     {"members": [...]}: remove
//
// Errors are {"error": "...", "class": "..."} with the class's status code
// (a change the state store could not take: store_unavailable, 503);
// every class is counted (sparsecast_control_api_errors_total{class}).
package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sparsecast/sparsecast/ffi"
	"github.com/sparsecast/sparsecast/headers"
)

// MaxBodyBytes bounds a request body: 65536 members fit with room to spare.
const MaxBodyBytes = 1 << 20

// DefaultAPI is where `control run` and `ctl` meet by default.
const DefaultAPI = "unix:/run/sparsecast/control.sock"

const numAPIClasses = 12

// apiClasses are the error classes, each with its status code.
var apiClasses = [numAPIClasses]string{
	"unauthorized", "bad_id", "bad_body", "bad_member", "unknown_group",
	"unknown_switch", "group_limit", "too_large", "not_found", "method_not_allowed",
	"store_unavailable", "conflict",
}

var apiStatus = [numAPIClasses]int{
	http.StatusUnauthorized, http.StatusBadRequest, http.StatusBadRequest, http.StatusBadRequest, http.StatusNotFound,
	http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusNotFound, http.StatusMethodNotAllowed,
	http.StatusServiceUnavailable, http.StatusConflict,
}

func classIndex(class string) int {
	for i, c := range apiClasses {
		if c == class {
			return i
		}
	}
	return -1
}

// APIError is the body of every error answer.
type APIError struct {
	Error string `json:"error"`
	Class string `json:"class"`
}

type api struct {
	s     *Server
	token []byte // nil: no token required
}

type arrivalKey struct{}

// Handler returns the API's handler. A non-empty token is required as
// "Authorization: Bearer TOKEN" on every request, compared in constant time.
func (s *Server) Handler(token string) http.Handler {
	a := &api{s: s}
	if token != "" {
		a.token = []byte(token)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/status", a.methods(map[string]http.HandlerFunc{"GET": a.status}))
	mux.HandleFunc("/v1/routes", a.methods(map[string]http.HandlerFunc{"GET": a.routes}))
	mux.HandleFunc("/v1/groups", a.methods(map[string]http.HandlerFunc{"GET": a.groups}))
	mux.HandleFunc("/v1/groups/{id}", a.methods(map[string]http.HandlerFunc{"GET": a.getGroup, "PUT": a.putGroup, "DELETE": a.deleteGroup}))
	mux.HandleFunc("/v1/groups/{id}/members", a.methods(map[string]http.HandlerFunc{"POST": a.addMembers, "DELETE": a.removeMembers}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, reqErr("not_found", "no such API path: %s", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrival := MonotonicNanos()
		if a.token != nil {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sparsecast"`)
				a.fail(w, reqErr("unauthorized", "missing or wrong bearer token"))
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), arrivalKey{}, arrival)))
	})
}

func arrivalOf(r *http.Request) uint64 {
	v, _ := r.Context().Value(arrivalKey{}).(uint64)
	return v
}

func (a *api) methods(h map[string]http.HandlerFunc) http.HandlerFunc {
	var allow []string
	for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
		if h[m] != nil {
			allow = append(allow, m)
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		f := h[r.Method]
		if f == nil {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			a.fail(w, reqErr("method_not_allowed", "%s %s: allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		f(w, r)
	}
}

func (a *api) fail(w http.ResponseWriter, err error) {
	var re *RequestError
	if !errors.As(err, &re) {
		re = &RequestError{Class: "bad_body", Msg: err.Error()}
	}
	i := classIndex(re.Class)
	if i < 0 {
		i = classIndex("bad_body")
	}
	a.s.apiErrs[i].Add(1)
	writeJSON(w, apiStatus[i], APIError{Error: re.Msg, Class: apiClasses[i]})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.s.Status())
}

func (a *api) routes(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("switch")
	if name == "" {
		a.fail(w, reqErr("unknown_switch", "name a switch: /v1/routes?switch=NAME"))
		return
	}
	v, err := a.s.Routes(name)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) groups(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"groups": a.s.Groups()})
}

func groupID(r *http.Request) (uint32, error) {
	s := r.PathValue("id")
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, reqErr("bad_id", "group ID %q: want a decimal number 0-%d", s, uint32(1<<32-1))
	}
	return uint32(v), nil
}

// membersBody reads {"members": [...]}; present reports whether the key was
// there at all.
func membersBody(r *http.Request) (members []uint16, err error) {
	var body struct {
		Members *[]int64 `json:"members"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, reqErr("too_large", "request body over %d bytes", MaxBodyBytes)
		}
		if errors.Is(err, io.EOF) {
			return nil, reqErr("bad_body", `empty body: want {"members": [IDs]}`)
		}
		return nil, reqErr("bad_body", `body: %v: want {"members": [IDs]}`, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, reqErr("too_large", "request body over %d bytes", MaxBodyBytes)
		}
		return nil, reqErr("bad_body", "body: data after the JSON object")
	}
	if body.Members == nil {
		return nil, reqErr("bad_body", `body: no "members" key`)
	}
	members = make([]uint16, 0, len(*body.Members))
	for _, m := range *body.Members {
		if m < 0 || m > headers.MaxID {
			return nil, reqErr("bad_member", "member %d out of range 0-%d", m, headers.MaxID)
		}
		members = append(members, uint16(m))
	}
	return members, nil
}

func (a *api) getGroup(w http.ResponseWriter, r *http.Request) {
	id, err := groupID(r)
	if err == nil {
		var g *Group
		if g, err = a.s.GetGroup(id); err == nil {
			writeJSON(w, http.StatusOK, g)
			return
		}
	}
	a.fail(w, err)
}

// change runs a membership change with the body's members.
func (a *api) change(w http.ResponseWriter, r *http.Request, f func(id uint32, m []uint16, arrival uint64) (*Group, error)) {
	id, err := groupID(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	m, err := membersBody(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	g, err := f(id, m, arrivalOf(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (a *api) putGroup(w http.ResponseWriter, r *http.Request)   { a.change(w, r, a.s.SetGroup) }
func (a *api) addMembers(w http.ResponseWriter, r *http.Request) { a.change(w, r, a.s.AddMembers) }
func (a *api) removeMembers(w http.ResponseWriter, r *http.Request) {
	a.change(w, r, a.s.RemoveMembers)
}

func (a *api) deleteGroup(w http.ResponseWriter, r *http.Request) {
	id, err := groupID(r)
	if err == nil {
		if err = a.s.DeleteGroup(id, arrivalOf(r)); err == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	a.fail(w, err)
}

// ParseAPIAddr splits an --api value: "unix:/path" or a loopback
// "IP:PORT" / "localhost:PORT". Anything reachable from another machine is
// refused: the API has no TLS.
func ParseAPIAddr(s string) (network, address string, err error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if p == "" || !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("--api %q: want unix:/absolute/path", s)
		}
		return "unix", p, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("--api %q: want unix:/path or a loopback HOST:PORT", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("--api %q: port %q: want 0-65535", s, port)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return "", "", fmt.Errorf("--api %q: %q is not a loopback address; the API is served on loopback or a Unix socket only", s, host)
		}
	}
	return "tcp", s, nil
}

// ReadToken reads a bearer token file: its first line, trimmed, at least 16
// characters.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if len(tok) < 16 {
		return "", fmt.Errorf("token file %s: the token is %d characters, want at least 16", path, len(tok))
	}
	return tok, nil
}

// ListenAPI opens the API listener. A Unix socket gets mode 0600 (its
// directory must exist; the default's, /run/sparsecast, is created 0700 if
// missing); a stale socket file left by a dead
// server is replaced, a live one is an error. TCP needs a token.
func ListenAPI(addr, token string) (net.Listener, error) {
	network, address, err := ParseAPIAddr(addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		if token == "" {
			return nil, fmt.Errorf("--api %s: a TCP API needs --token-file", addr)
		}
		return net.Listen("tcp", address)
	}
	// Only the default's directory is made (0700, like the ring
	// directory it shares); another one must exist: a typo in --api is an
	// error, not a new directory.
	dir := filepath.Dir(address)
	if dir == ffi.DefaultRingDir {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("--api %s: %w", addr, err)
		}
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("--api %s: directory %s: %w", addr, dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("--api %s: %s is not a directory", addr, dir)
	}
	if fi, err := os.Lstat(address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", address)
		}
		if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another control process is serving there", address)
		}
		if err := os.Remove(address); err != nil {
			return nil, err
		}
	}
	old := unix.Umask(0o177) // the socket is born 0600
	ln, err := net.Listen("unix", address)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(address, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ServeAPI serves the API on ln until ctx ends.
func (s *Server) ServeAPI(ctx context.Context, ln net.Listener, token string) error {
	srv := &http.Server{
		Handler:           s.Handler(token),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
