// Large route sets: compact, streamed, no allocation per route.
//
// A switch of a big fabric carries millions of route entries (issue 14: a
// generated 50 MB config, 1.7 M entries). yaml.v3 builds a node tree of the
// whole document before decoding it, about 40 times the file's size, and
// []RouteEntry costs three strings per entry on top. So route entries in bulk
// never become either:
//
//  1. routes_file: a file of one-line records, "RECEIVERS PORT [BACKUP]",
//     read line by line (parseRoutesFile), errors as file:line.
//  2. A top-level routes: list whose entries are flow mappings on one line
//     ("- {receivers: "1-4", port: p0, backup: p1}", the form README shows
//     and yaml.Marshal of RouteEntry writes) or block mappings of one key a
//     line, with plain or simply quoted values, is cut out of the YAML
//     before yaml.v3 sees it and read by a line parser (splitFlowRoutes).
//     Any line it is not sure yaml.v3 would read the same way sends the
//     whole document down the yaml.v3 path, which decodes it as before;
//     FuzzFlowRoutes holds the two readings to the same result.
//
// Both give a routeSet: spans of receiver IDs with a port and a backup, 16
// bytes each, named by their line, that Validate resolves to port indexes and
// TablesFromConfig applies after Config.Routes.
package dataplane

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/sparsecast/sparsecast/headers"
)

// routeSpan is receivers lo-hi through port with backup: indexes into the
// set's names until Validate resolves them to port indexes.
type routeSpan struct {
	lo, hi       uint16
	port, backup uint8 // NoPort: no backup
	entry        int32 // routes[entry] of a YAML list; -1 in a routes file
	line         int32
}

// routeSet is one source of route spans: a config's routes: list or its
// routes_file.
type routeSet struct {
	src      string        // a routes file's path, for messages
	names    []string      // port names as written, indexed by the spans' port and backup
	spans    [][]routeSpan // in chunks: growing never copies
	entries  int           // route entries (lines) read
	resolved bool          // port and backup are port indexes
}

// where names a span's source for a message: "routes[3] (line 9)" in the
// config's list, "routes.txt:9" in a routes file.
func (s *routeSet) where(sp *routeSpan) string {
	if sp.entry >= 0 { // LoadConfig's message names the file
		return fmt.Sprintf("routes[%d] (line %d)", sp.entry, sp.line)
	}
	return fmt.Sprintf("%s:%d", s.src, sp.line)
}

// resolve turns the spans' name indexes into port indexes (exact names),
// once.
func (s *routeSet) resolve(ports []PortConfig) error {
	if s.resolved {
		return nil
	}
	idx := make([]uint8, len(s.names))
	for i, n := range s.names {
		idx[i] = NoPort
		for j := range ports {
			if ports[j].Name == n {
				idx[i] = uint8(j)
				break
			}
		}
	}
	err := s.each(func(sp *routeSpan) error {
		p := idx[sp.port]
		if p == NoPort {
			return fmt.Errorf("%s: unknown port %q", s.where(sp), s.names[sp.port])
		}
		b := uint8(NoPort)
		if sp.backup != NoPort {
			if b = idx[sp.backup]; b == NoPort || b == p {
				return fmt.Errorf("%s: backup %q must be another configured port", s.where(sp), s.names[sp.backup])
			}
		}
		sp.port, sp.backup = p, b
		return nil
	})
	s.resolved = err == nil
	return err
}

// maxSpanChunk bounds a chunk of spans (512 KiB); the first chunks are
// smaller, so a small config allocates little.
const maxSpanChunk = 1 << 15

func (s *routeSet) add(sp routeSpan) {
	n := len(s.spans)
	if n == 0 || len(s.spans[n-1]) == cap(s.spans[n-1]) {
		c := 16
		if n > 0 {
			c = min(2*cap(s.spans[n-1]), maxSpanChunk)
		}
		s.spans = append(s.spans, make([]routeSpan, 0, c))
		n++
	}
	s.spans[n-1] = append(s.spans[n-1], sp)
}

// each calls fn for every span in order, until it fails.
func (s *routeSet) each(fn func(*routeSpan) error) error {
	for _, c := range s.spans {
		for i := range c {
			if err := fn(&c[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// name interns a port name: its index in names, without allocating for a
// name seen before.
func (s *routeSet) name(idx map[string]uint8, b []byte) (uint8, error) {
	if i, ok := idx[string(b)]; ok {
		return i, nil
	}
	if len(s.names) >= MaxPorts {
		return 0, fmt.Errorf("more than %d different port names", MaxPorts)
	}
	i := uint8(len(s.names))
	s.names = append(s.names, string(b))
	idx[string(b)] = i
	return i, nil
}

// addReceivers appends a span per range of a receiver list ("1-4,7", ASCII
// spaces around the numbers allowed): the lists ParseIDSet reads, less its
// Unicode spaces and signs.
func (s *routeSet) addReceivers(list []byte, port, backup uint8, entry, line int) error {
	if len(bytes.Trim(list, " ")) == 0 {
		return errors.New("empty receiver list")
	}
	for len(list) > 0 {
		part := list
		if i := bytes.IndexByte(list, ','); i >= 0 {
			part, list = list[:i], list[i+1:]
			if len(list) == 0 {
				return fmt.Errorf("receiver list ends with a comma")
			}
		} else {
			list = nil
		}
		lo, hi, isRange := bytes.Cut(part, []byte("-"))
		a, err := parseRouteID(lo)
		if err != nil {
			return err
		}
		b := a
		if isRange {
			if b, err = parseRouteID(hi); err != nil {
				return err
			}
			if b < a {
				return fmt.Errorf("range %d-%d runs backwards", a, b)
			}
		}
		s.add(routeSpan{lo: uint16(a), hi: uint16(b), port: port, backup: backup, entry: int32(entry), line: int32(line)})
	}
	return nil
}

// parseRouteID reads a decimal receiver ID, spaces around it allowed.
func parseRouteID(b []byte) (int, error) {
	t := bytes.Trim(b, " ")
	if len(t) == 0 || len(t) > 5 {
		return 0, fmt.Errorf("%q is not a receiver ID", b)
	}
	v := 0
	for _, c := range t {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a receiver ID", b)
		}
		v = v*10 + int(c-'0')
	}
	if v > headers.MaxID {
		return 0, fmt.Errorf("receiver ID %d out of range 0-%d", v, headers.MaxID)
	}
	return v, nil
}

// maxRouteLine bounds a line of a routes file.
const maxRouteLine = 4096

// parseRoutesFile reads a routes file: one route entry per line,
//
//	RECEIVERS PORT [BACKUP]    # receivers "1-4,7"; fields split by spaces or tabs
//
// with blank lines and # comments. It keeps one span per range and nothing
// per line, so a file of any size streams through a 64 KiB buffer.
func parseRoutesFile(r io.Reader, src string) (*routeSet, error) {
	s := &routeSet{src: src}
	idx := map[string]uint8{}
	br := bufio.NewReaderSize(r, 64<<10)
	var f [4][]byte
	for line := 1; ; line++ {
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(b) > maxRouteLine {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", src, line, maxRouteLine)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if i := bytes.IndexByte(b, '#'); i >= 0 {
			b = b[:i]
		}
		n := 0
		for len(b) > 0 {
			i := 0
			for i < len(b) && isRouteSpace(b[i]) {
				i++
			}
			b = b[i:]
			if len(b) == 0 {
				break
			}
			j := 0
			for j < len(b) && !isRouteSpace(b[j]) {
				j++
			}
			if n == len(f) {
				break
			}
			f[n], b, n = b[:j], b[j:], n+1
		}
		switch {
		case n == 0:
		case n == 1:
			return nil, fmt.Errorf("%s:%d: want RECEIVERS PORT [BACKUP], got only %q", src, line, f[0])
		case n > 3:
			return nil, fmt.Errorf("%s:%d: want RECEIVERS PORT [BACKUP], got more than 3 fields", src, line)
		default:
			port, perr := s.name(idx, f[1])
			backup := uint8(NoPort)
			if perr == nil && n == 3 {
				backup, perr = s.name(idx, f[2])
			}
			if perr == nil {
				perr = s.addReceivers(f[0], port, backup, -1, line)
			}
			if perr != nil {
				return nil, fmt.Errorf("%s:%d: %w", src, line, perr)
			}
			s.entries++
		}
		if err == io.EOF {
			return s, nil
		}
	}
}

func isRouteSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// loadRoutesFile opens and reads a routes file.
func loadRoutesFile(path string) (*routeSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("routes_file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("routes_file: %s is a directory", path)
	}
	return parseRoutesFile(f, path)
}

// splitFlowRoutes finds a top-level "routes:" whose items are all mappings
// of receivers, port and backup, each a flow mapping on one line or a block
// mapping of one key a line, and reads them. It returns the
// document with those lines blanked (line numbers kept, for yaml.v3's
// messages) and the routes, or ok false when it is not sure the document is
// that shape: the caller then gives yaml.v3 the whole document. It never
// fails: anything odd is yaml.v3's to report.
func splitFlowRoutes(data []byte) (rest []byte, set *routeSet, routesLine int, ok bool) {
	// The routes: line: at column 0, nothing after it but a comment, once,
	// and no document marker or directive other than a leading "---".
	start, line := -1, 0
	for off, ln := 0, 1; off < len(data); ln++ {
		end := lineEnd(data, off)
		l := data[off:end]
		switch {
		case bytes.HasPrefix(l, []byte("---")) && ln > 1, bytes.HasPrefix(l, []byte("...")), bytes.HasPrefix(l, []byte("%")):
			if start < 0 {
				return nil, nil, 0, false
			}
		case bytes.HasPrefix(l, []byte("routes:")):
			if start >= 0 || !blankOrComment(l[len("routes:"):]) {
				return nil, nil, 0, false
			}
			start, line = next(data, end), ln
		}
		off = next(data, end)
	}
	if start < 0 || start >= len(data) {
		return nil, nil, 0, false
	}
	s := &routeSet{}
	idx := map[string]uint8{}
	// Items at one indent, each a flow mapping on its line or a block
	// mapping whose first key follows the "- " and whose other keys are
	// on the lines below, 2 further in.
	indent := -1
	var f routeFields
	pending, pendingLine := false, 0
	flush := func() bool {
		ok := !pending || s.finish(idx, &f, pendingLine)
		pending = false
		return ok
	}
	off, ln := start, line+1
lines:
	for ; off < len(data); ln++ {
		end := lineEnd(data, off)
		l := data[off:end]
		if commentLine(l) {
			off = next(data, end)
			continue
		}
		i := 0
		for i < len(l) && l[i] == ' ' {
			i++
		}
		item := bytes.HasPrefix(l[i:], []byte("- "))
		switch {
		case pending && !item && i == indent+2:
			if !f.blockKey(l[i:]) {
				return nil, nil, 0, false
			}
		case !item:
			// The section ends at the next top-level key or at the
			// document's end.
			if !bytes.HasPrefix(l, []byte("---")) && !bytes.HasPrefix(l, []byte("...")) && (i > 0 || l[0] == '\t' || l[0] == '-') {
				return nil, nil, 0, false
			}
			break lines
		default:
			if indent >= 0 && i != indent || !flush() {
				return nil, nil, 0, false
			}
			indent = i
			if v := l[i+2:]; len(v) > 0 && v[0] == '{' {
				f = routeFields{}
				if !f.flowEntry(v) || !s.finish(idx, &f, ln) {
					return nil, nil, 0, false
				}
			} else {
				f, pending, pendingLine = routeFields{}, true, ln
				if !f.blockKey(v) {
					return nil, nil, 0, false
				}
			}
		}
		off = next(data, end)
	}
	if !flush() {
		return nil, nil, 0, false
	}
	// The blanked document: everything but the section, whose lines stay
	// as empty ones.
	rest = make([]byte, 0, start+(ln-line-1)+len(data)-off)
	rest = append(rest, data[:start]...)
	for range ln - line - 1 {
		rest = append(rest, '\n')
	}
	rest = append(rest, data[off:]...)
	return rest, s, line, true
}

// routeFields are one entry's values, as written.
type routeFields struct {
	v    [3][]byte // receivers, port, backup
	have [3]bool
}

// set records a key's value; false for an unknown or repeated key, which is
// yaml.v3's to report.
func (f *routeFields) set(key, v []byte) bool {
	k := -1
	switch string(key) {
	case "receivers":
		k = 0
	case "port":
		k = 1
	case "backup":
		k = 2
	}
	if k < 0 || f.have[k] {
		return false
	}
	f.v[k], f.have[k] = v, true
	return true
}

// key reads a lower-case key and its ": ".
func routeKey(l []byte) (key, rest []byte, ok bool) {
	j := 0
	for j < len(l) && l[j] >= 'a' && l[j] <= 'z' {
		j++
	}
	if j == 0 || len(l) < j+2 || l[j] != ':' || l[j+1] != ' ' {
		return nil, nil, false
	}
	return l[:j], trimSpaces(l[j+2:]), true
}

// flowEntry reads `{receivers: "1-4,7", port: p0, backup: p1}` (keys in
// any order) and an optional trailing comment.
func (f *routeFields) flowEntry(l []byte) bool {
	l = l[1:] // '{'
	for {
		key, r, ok := routeKey(trimSpaces(l))
		if !ok {
			return false
		}
		v, r, ok := scalar(r, false)
		if !ok || !f.set(key, v) {
			return false
		}
		l = trimSpaces(r)
		if len(l) > 0 && l[0] == ',' {
			l = l[1:]
			continue
		}
		return len(l) > 0 && l[0] == '}' && blankOrComment(l[1:])
	}
}

// blockKey reads one `key: value` line of a block mapping, with an optional
// trailing comment.
func (f *routeFields) blockKey(l []byte) bool {
	key, r, ok := routeKey(l)
	if !ok {
		return false
	}
	v, r, ok := scalar(r, true)
	return ok && blankOrComment(r) && f.set(key, v)
}

// finish adds an entry's spans: receivers and port are required (else
// yaml.v3 reports the entry), an empty backup is none.
func (s *routeSet) finish(idx map[string]uint8, f *routeFields, line int) bool {
	if !f.have[0] || !f.have[1] {
		return false
	}
	p, err := s.name(idx, f.v[1])
	if err != nil {
		return false
	}
	b := uint8(NoPort)
	if len(f.v[2]) > 0 {
		if b, err = s.name(idx, f.v[2]); err != nil {
			return false
		}
	}
	if s.addReceivers(f.v[0], p, b, s.entries, line) != nil {
		return false
	}
	s.entries++
	return true
}

// scalar reads a scalar whose value yaml.v3 would give as written: a
// double-quoted string without escapes, a single-quoted one without quotes
// inside, or a plain word of letters, digits and _ . / - (and, in block
// context, commas) that is not null.
func scalar(l []byte, block bool) (v, rest []byte, ok bool) {
	if len(l) == 0 {
		return nil, nil, false
	}
	switch q := l[0]; q {
	case '"', '\'':
		for i := 1; i < len(l); i++ {
			c := l[i]
			switch {
			case c == q:
				return l[1:i], l[i+1:], true
			case c < 0x20 || c > 0x7e || c == '\\':
				return nil, nil, false
			}
		}
		return nil, nil, false
	}
	i := 0
	for i < len(l) && (plainChar(l[i], i == 0) || block && i > 0 && l[i] == ',') {
		i++
	}
	switch w := string(l[:i]); w {
	case "", "null", "Null", "NULL":
		return nil, nil, false
	}
	return l[:i], l[i:], true
}

func plainChar(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '/' || c == '-' && !first
}

func trimSpaces(b []byte) []byte { return bytes.TrimLeft(b, " ") }

// blankOrComment: the rest of a line is only spaces, then nothing or a
// comment ('#' after a space: YAML's rule). commentLine: a whole line that
// is blank or a comment.
func blankOrComment(l []byte) bool {
	t := bytes.TrimLeft(l, " ")
	return len(t) == 0 || t[0] == '#' && len(t) < len(l) && printable(t)
}

func commentLine(l []byte) bool {
	t := bytes.TrimLeft(l, " ")
	return len(t) == 0 || t[0] == '#' && printable(t)
}

// printable: a comment of printable ASCII and tabs, so no byte in it is a
// line break or an encoding error to yaml.v3 (which reads \r, NEL, LS and PS
// as line breaks, and rejects invalid UTF-8 and control characters).
func printable(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\t' {
			return false
		}
	}
	return true
}

// lineEnd is the index of the '\n' ending the line at off (or len(data)),
// less a '\r' before it.
func lineEnd(data []byte, off int) int {
	end := len(data)
	if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
		end = off + i
	}
	if end > off && data[end-1] == '\r' {
		end--
	}
	return end
}

// next is the offset of the line after the one ending at end.
func next(data []byte, end int) int {
	if end < len(data) && data[end] == '\r' {
		end++
	}
	if end < len(data) {
		end++
	}
	return end
}

// routesKeyIsTopLevel checks on the blanked document what splitFlowRoutes
// assumed from the text: "routes" at that line is a key of the first
// document's top-level mapping, with no value.
func routesKeyIsTopLevel(rest []byte, line int) bool {
	var doc yaml.Node
	if err := yaml.Unmarshal(rest, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return false
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value == "routes" {
			return k.Line == line && k.Column == 1 && k.Style == 0 && v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == ""
		}
	}
	return false
}
