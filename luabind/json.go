package luabind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// maxNesting bounds how deep the toolbox converters descend into nested
// tables, so a pathological structure costs an error, not the Go stack.
const maxNesting = 200

// jsonNullType is the Go value behind the json.null userdata.
type jsonNullType struct{ name string }

// jsonNull is the sentinel stored in json.null in every state; converters
// compare userdata values against it.
var jsonNull = &jsonNullType{"json.null"}

// isJSONNull reports whether v is the json.null sentinel.
func isJSONNull(v lua.LValue) bool {
	ud, ok := v.(*lua.LUserData)
	return ok && ud.Value == jsonNull
}

// jsonTypeField is the metatable field json.array and json.object set.
const jsonTypeField = "__jsontype"

// Table shapes for JSON encoding and for conversion to Go values.
const (
	shapeArray  = "array"
	shapeObject = "object"
)

// openJSON is the loader of the json module:
//
//	json.encode(v [, {indent = "  " | 2}]) -> string
//	json.decode(s) -> value
//	json.null                 -- sentinel for JSON null (Lua nil cannot live in tables)
//	json.array(t) -> t        -- mark t to encode as a JSON array, even when empty
//	json.object(t) -> t       -- mark t to encode as a JSON object, even when empty
//
// Encoding: a table whose keys are exactly 1..n encodes as an array, any other
// non-empty table as an object with keys in sorted order (number keys become
// strings). An empty unmarked table encodes as [] (lists are the common case
// in reports); use json.object({}) for {}. Decoding marks empty arrays and
// objects, so they encode back as they came. NaN and infinities, functions,
// cycles and nesting deeper than 200 levels raise errors. Strings are
// written as UTF-8; invalid bytes become U+FFFD. Numbers decode to Lua
// numbers (float64), so integers beyond 2^53 lose precision.
func openJSON(L *lua.LState) int {
	null := nullValue(L)

	arrayMT := L.NewTable()
	arrayMT.RawSetString(jsonTypeField, lua.LString(shapeArray))
	objectMT := L.NewTable()
	objectMT.RawSetString(jsonTypeField, lua.LString(shapeObject))

	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"encode": jsonEncode,
		"decode": func(L *lua.LState) int { return jsonDecode(L, null, arrayMT, objectMT) },
		"array":  func(L *lua.LState) int { return jsonMark(L, "json.array", arrayMT) },
		"object": func(L *lua.LState) int { return jsonMark(L, "json.object", objectMT) },
	})
	mod.RawSetString("null", null)
	L.Push(mod)
	return 1
}

// nullKey is where a state keeps its null sentinel, shared by json.null
// and sql.null so that rows from a database encode their NULLs as JSON null.
const nullKey = "mailbot.luabind.null"

// nullValue returns the state's null sentinel, creating it on first use.
func nullValue(L *lua.LState) *lua.LUserData {
	reg := L.Get(lua.RegistryIndex).(*lua.LTable)
	if ud, ok := reg.RawGetString(nullKey).(*lua.LUserData); ok {
		return ud
	}
	null := L.NewUserData()
	null.Value = jsonNull
	nullMT := L.NewTable()
	nullMT.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("json.null"))
		return 1
	}))
	nullMT.RawSetString("__metatable", lua.LString("json.null"))
	L.SetMetatable(null, nullMT)
	reg.RawSetString(nullKey, null)
	return null
}

// jsonMark: json.array(t) / json.object(t) -> t
func jsonMark(L *lua.LState, fname string, mt *lua.LTable) int {
	t := L.CheckTable(1)
	if cur, ok := L.GetMetatable(t).(*lua.LTable); ok && cur != mt {
		if _, marked := cur.RawGetString(jsonTypeField).(lua.LString); !marked {
			L.ArgError(1, fname+": table already has a metatable")
		}
	}
	L.SetMetatable(t, mt)
	L.Push(t)
	return 1
}

// jsonEncode: json.encode(v [, opts]) -> string
func jsonEncode(L *lua.LState) int {
	v := L.CheckAny(1)
	indent := ""
	if opts := L.OptTable(2, nil); opts != nil {
		switch iv := opts.RawGetString("indent").(type) {
		case lua.LString:
			indent = string(iv)
		case lua.LNumber:
			indent = strings.Repeat(" ", int(iv))
		case *lua.LNilType:
		default:
			L.ArgError(2, "indent must be a string or a number")
		}
	}
	limit := memoryLimit(stateOptions(L))
	out, err := encodeJSON(L, v, indent, limit)
	var big *resultTooLarge
	if errors.As(err, &big) || (err == nil && limit > 0 && int64(len(out)) > limit) {
		n := len(out)
		if big != nil {
			n = big.size
		}
		refuse(L, limit, "json.encode", float64(n))
	}
	if err != nil {
		L.RaiseError("json.encode: %v", err)
	}
	L.Push(lua.LString(out))
	return 1
}

// EncodeJSON encodes a Lua value with the json module's rules (see the json
// module documentation in openJSON); indent, if non-empty, pretty-prints.
func EncodeJSON(v lua.LValue, indent string) (string, error) {
	return encodeJSON(nil, v, indent, 0)
}

// resultTooLarge stops a conversion whose output passed the memory limit
// (shared subtables can make it exponentially larger than the value).
type resultTooLarge struct{ size int }

func (e *resultTooLarge) Error() string {
	return "result of " + formatSize(int64(e.size)) + " is too large"
}

// encodeJSON is EncodeJSON stopping at max bytes of output (0: no limit)
// and, when L is not nil, when the run's context ends.
func encodeJSON(L *lua.LState, v lua.LValue, indent string, max int64) (string, error) {
	e := &jsonEncoder{visiting: map[*lua.LTable]bool{}, L: L, max: max, next: chunkBytes}
	if err := e.encode(v, "$", 0); err != nil {
		return "", err
	}
	if indent == "" {
		return e.buf.String(), nil
	}
	if max > 0 {
		if n := indentedSize(e.buf.Bytes(), len(indent)); int64(n) > max {
			return "", &resultTooLarge{size: n}
		}
	}
	var out bytes.Buffer
	if err := json.Indent(&out, e.buf.Bytes(), "", indent); err != nil {
		return "", fmt.Errorf("indent: %w", err)
	}
	return out.String(), nil
}

// indentedSize bounds from above the length of compact JSON once
// json.Indent has put each element on its own line, indented by depth.
func indentedSize(compact []byte, indent int) int {
	n, depth, inString := len(compact), 0, false
	for i := 0; i < len(compact); i++ {
		c := compact[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			n += 1 + indent*depth
		case ',':
			n += 1 + indent*depth
		case '}', ']':
			depth--
			n += 1 + indent*max(depth, 0)
		case ':':
			n++
		}
	}
	return n
}

// jsonEncoder writes compact JSON; visiting holds the tables on the current
// path, which is how cycles are told apart from shared subtables.
type jsonEncoder struct {
	buf      bytes.Buffer
	visiting map[*lua.LTable]bool
	L        *lua.LState // checked for the run's end every chunkBytes; may be nil
	max      int64       // output limit; 0: none
	next     int         // output length of the next context check
}

func (e *jsonEncoder) encode(v lua.LValue, path string, depth int) error {
	if n := e.buf.Len(); n >= e.next {
		if e.max > 0 && int64(n) > e.max {
			return &resultTooLarge{size: n}
		}
		if e.L != nil {
			checkRun(e.L)
		}
		e.next = n + chunkBytes
	}
	switch x := v.(type) {
	case *lua.LNilType:
		e.buf.WriteString("null")
	case lua.LBool:
		e.buf.WriteString(strconv.FormatBool(bool(x)))
	case lua.LNumber:
		s, err := formatJSONNumber(float64(x))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		e.buf.WriteString(s)
	case lua.LString:
		writeJSONString(&e.buf, string(x))
	case *lua.LUserData:
		if x.Value != jsonNull {
			return fmt.Errorf("%s: cannot encode userdata", path)
		}
		e.buf.WriteString("null")
	case *lua.LTable:
		return e.encodeTable(x, path, depth)
	default:
		return fmt.Errorf("%s: cannot encode %s", path, v.Type())
	}
	return nil
}

func (e *jsonEncoder) encodeTable(t *lua.LTable, path string, depth int) error {
	if depth >= maxNesting {
		return fmt.Errorf("%s: nesting deeper than %d levels", path, maxNesting)
	}
	if e.visiting[t] {
		return fmt.Errorf("%s: cycle detected (table contains itself)", path)
	}
	e.visiting[t] = true
	defer delete(e.visiting, t)

	sh, err := tableShape(t)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if sh.kind == shapeArray {
		e.buf.WriteByte('[')
		for i := 1; i <= sh.n; i++ {
			if i > 1 {
				e.buf.WriteByte(',')
			}
			if err := e.encode(t.RawGetInt(i), path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		e.buf.WriteByte(']')
		return nil
	}
	e.buf.WriteByte('{')
	for i, k := range sh.keys {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		writeJSONString(&e.buf, k.name)
		e.buf.WriteByte(':')
		if err := e.encode(t.RawGet(k.key), path+"."+k.name, depth+1); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

// shapeKey is one object key: its string form and the original Lua key.
type shapeKey struct {
	name string
	key  lua.LValue
}

// shape describes how a table converts: an array of n elements (holes are
// nil) or an object with keys sorted by name.
type shape struct {
	kind string
	n    int
	keys []shapeKey
}

// tableShape classifies t. A json.array/json.object marker wins; otherwise
// keys 1..n (n >= 0, so the empty table too) make an array and anything else
// an object.
func tableShape(t *lua.LTable) (shape, error) {
	marker := ""
	if mt, ok := t.Metatable.(*lua.LTable); ok {
		if s, ok := mt.RawGetString(jsonTypeField).(lua.LString); ok {
			marker = string(s)
		}
	}
	count, maxInt, allInts := 0, 0, true
	t.ForEach(func(k, _ lua.LValue) {
		count++
		if n, ok := k.(lua.LNumber); ok && float64(n) == math.Trunc(float64(n)) && n >= 1 && n <= math.MaxInt32 {
			maxInt = max(maxInt, int(n))
			return
		}
		allInts = false
	})
	if marker == shapeArray || (marker == "" && allInts && maxInt == count) {
		if !allInts {
			return shape{}, errors.New("table marked as array has non-integer keys")
		}
		return shape{kind: shapeArray, n: maxInt}, nil
	}
	keys := make([]shapeKey, 0, count)
	var bad lua.LValue
	t.ForEach(func(k, _ lua.LValue) {
		switch kk := k.(type) {
		case lua.LString:
			keys = append(keys, shapeKey{string(kk), k})
		case lua.LNumber:
			keys = append(keys, shapeKey{formatLuaNumber(float64(kk)), k})
		default:
			bad = k
		}
	})
	if bad != nil {
		return shape{}, fmt.Errorf("unsupported %s key in table", bad.Type())
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].name < keys[j].name })
	return shape{kind: shapeObject, keys: keys}, nil
}

// formatJSONNumber formats a Lua number as JSON: integral values without a
// fraction, others in the shortest form that round-trips.
func formatJSONNumber(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("cannot encode %v", f)
	}
	return formatLuaNumber(f), nil
}

// formatLuaNumber formats integral values below 1e21 without a fraction or
// exponent ("3", "9007199254740992"), as JavaScript does, and everything else
// in strconv's shortest round-tripping form.
func formatLuaNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		if f == 0 {
			return "0" // not "-0"
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// writeJSONString quotes s as a JSON string. Unlike encoding/json it leaves
// <, > and & alone: the output is data, not HTML.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20 || c == 0x7f:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but they end lines in JavaScript.
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}

// jsonDecode: json.decode(s) -> value
func jsonDecode(L *lua.LState, null *lua.LUserData, arrayMT, objectMT *lua.LTable) int {
	s := L.CheckString(1)
	if limit := memoryLimit(stateOptions(L)); limit > 0 {
		refuse(L, limit, "json.decode", decodedSize(s))
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		L.RaiseError("json.decode: %s", describeJSONError(s, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		L.RaiseError("json.decode: %s: unexpected data after the top-level value",
			jsonPosition(s, int(dec.InputOffset())))
	}
	d := &jsonDecoder{L: L, null: null, arrayMT: arrayMT, objectMT: objectMT}
	lv, err := d.toLua(v)
	if err != nil {
		L.RaiseError("json.decode: %v", err)
	}
	L.Push(lv)
	return 1
}

// decodedSize estimates the memory json.decode takes for s: the Go values
// decoded first and the Lua values made from them, about 64 bytes per
// element besides the text.
func decodedSize(s string) float64 {
	n, inString := 1, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ',', '[', '{':
			n++
		}
	}
	return float64(len(s)) + 64*float64(n)
}

// describeJSONError adds line and column to encoding/json syntax errors,
// which only carry a byte offset.
func describeJSONError(src string, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the offending byte too; point at that byte.
		return jsonPosition(src, int(se.Offset)-1) + ": " + se.Error()
	}
	if errors.Is(err, io.EOF) {
		return "empty input"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

// jsonPosition turns a byte offset into "line L, column C" (1-based).
func jsonPosition(src string, off int) string {
	off = min(max(off, 0), len(src))
	line := 1 + strings.Count(src[:off], "\n")
	col := off - strings.LastIndexByte(src[:off], '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// jsonDecoder converts encoding/json's generic values into Lua values.
type jsonDecoder struct {
	L                 *lua.LState
	null              *lua.LUserData
	arrayMT, objectMT *lua.LTable
}

func (d *jsonDecoder) toLua(v any) (lua.LValue, error) {
	switch x := v.(type) {
	case nil:
		return d.null, nil
	case bool:
		return lua.LBool(x), nil
	case string:
		return lua.LString(x), nil
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s out of range", x)
		}
		return lua.LNumber(f), nil
	case []any:
		t := d.L.CreateTable(len(x), 0)
		for _, e := range x {
			lv, err := d.toLua(e)
			if err != nil {
				return nil, err
			}
			t.Append(lv)
		}
		if len(x) == 0 {
			d.L.SetMetatable(t, d.arrayMT)
		}
		return t, nil
	case map[string]any:
		t := d.L.CreateTable(0, len(x))
		for k, e := range x {
			lv, err := d.toLua(e)
			if err != nil {
				return nil, err
			}
			t.RawSetString(k, lv)
		}
		if len(x) == 0 {
			d.L.SetMetatable(t, d.objectMT)
		}
		return t, nil
	}
	return nil, fmt.Errorf("unexpected value of type %T", v)
}
