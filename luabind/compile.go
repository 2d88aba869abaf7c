package luabind

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// SyntaxError is a Lua script that does not parse or compile.
// Its message reads like the reference Lua compiler's:
// "scripts/a.lua:3: unexpected symbol near 'x'".
type SyntaxError struct {
	File   string // chunk name, usually the script path
	Line   int    // 1-based; 0 when the error is at end of file
	Column int    // 1-based; 0 when unknown
	Near   string // offending token, if known
	Msg    string // the parser's message
}

// Error implements error.
func (e *SyntaxError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": " + e.Msg)
	switch {
	case e.Line == 0:
		b.WriteString(" near <eof>")
	case e.Near != "":
		b.WriteString(" near '" + e.Near + "'")
	}
	return b.String()
}

// CompileFile parses and compiles the Lua script at path. The returned proto
// is immutable and can be run in any number of states with DoProto. A first
// line starting with "#" (a shebang) is ignored, keeping line numbers intact.
// A script that does not parse yields a *SyntaxError; an unreadable file an
// error wrapping the *fs.PathError.
func CompileFile(path string) (*lua.FunctionProto, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", path, err)
	}
	if bytes.HasPrefix(src, []byte("#")) {
		// Turn the shebang into a comment instead of dropping the line, so
		// every later line keeps its number in error messages.
		src = append([]byte("--"), src...)
	}
	return compileReader(bytes.NewReader(src), path)
}

// CompileString compiles Lua source; name is the chunk name used in error
// messages and tracebacks (e.g. "inline" or a file path).
// A parse failure yields a *SyntaxError.
func CompileString(src, name string) (*lua.FunctionProto, error) {
	return compileReader(strings.NewReader(src), name)
}

// compileReader parses and compiles one chunk, converting gopher-lua's parse
// and compile errors into *SyntaxError.
func compileReader(r io.Reader, name string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(r, name)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			se := &SyntaxError{File: name, Line: pe.Pos.Line, Column: pe.Pos.Column,
				Near: pe.Token, Msg: pe.Message}
			if pe.Pos.Line == parse.EOF {
				se.Line, se.Column, se.Near = 0, 0, ""
			}
			return nil, se
		}
		return nil, &SyntaxError{File: name, Msg: err.Error()}
	}
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) {
			return nil, &SyntaxError{File: name, Line: ce.Line, Msg: ce.Message}
		}
		return nil, &SyntaxError{File: name, Msg: err.Error()}
	}
	trimProto(proto)
	return proto, nil
}

// trimProto copies the proto's slices to their exact length. The compiler
// leaves them pointing into its large working buffers (about 17 KB per
// function), which a long-lived loaded script would otherwise keep alive.
func trimProto(p *lua.FunctionProto) {
	p.Code = exact(p.Code)
	p.Constants = exact(p.Constants)
	p.FunctionPrototypes = exact(p.FunctionPrototypes)
	p.DbgSourcePositions = exact(p.DbgSourcePositions)
	p.DbgLocals = exact(p.DbgLocals)
	p.DbgCalls = exact(p.DbgCalls)
	p.DbgUpvalues = exact(p.DbgUpvalues)
	for _, c := range p.FunctionPrototypes {
		trimProto(c)
	}
}

func exact[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// DoProto runs a compiled chunk in L and discards its results. Because a
// proto is immutable, one compile can serve many states (one per run).
// Start the run with StartRun (or L.SetContext) first; a run stopped by the
// context, a Lua error or a Go panic inside a module returns a *lua.ApiError,
// whose message starts with "file:line:" (see ErrorLocation).
func DoProto(L *lua.LState, proto *lua.FunctionProto) error {
	L.Push(L.NewFunctionFromProto(proto))
	return L.PCall(0, 0, nil)
}

// locationRE matches the "file:line:" prefix gopher-lua puts on runtime
// errors and on traceback lines. The file part must not contain ':' followed
// by digits so that "a.lua:3:" is split at the right place.
var locationRE = regexp.MustCompile(`^\s*([^\s].*?):(\d+):`)

// ErrorLocation extracts the script file and line an error points at. It
// understands *SyntaxError and *lua.ApiError (a raised string carries
// "file:line:"; for a raised table or a Go panic the first Lua frame of the
// traceback is used). ok is false when no location is known.
func ErrorLocation(err error) (file string, line int, ok bool) {
	var se *SyntaxError
	if errors.As(err, &se) {
		return se.File, se.Line, se.Line > 0
	}
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		return "", 0, false
	}
	if ae.Cause != nil {
		var pe *parse.Error
		if errors.As(ae.Cause, &pe) && pe.Pos.Line > 0 {
			return pe.Pos.Source, pe.Pos.Line, true
		}
	}
	if s, isStr := ae.Object.(lua.LString); isStr {
		if file, line, ok := matchLocation(string(s)); ok {
			return file, line, true
		}
	}
	for tl := range strings.SplitSeq(ae.StackTrace, "\n") {
		if file, line, ok := matchLocation(tl); ok {
			return file, line, true
		}
	}
	return "", 0, false
}

// matchLocation parses a leading "file:line:"; "[G]" frames (Go functions)
// carry no line and are skipped by the regexp.
func matchLocation(s string) (string, int, bool) {
	m := locationRE.FindStringSubmatch(s)
	if m == nil {
		return "", 0, false
	}
	n, err := strconv.Atoi(m[2])
	if err != nil || n <= 0 {
		return "", 0, false
	}
	return m[1], n, true
}
