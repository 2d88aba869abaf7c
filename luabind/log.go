package luabind

import (
	"context"
	"log/slog"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// redactedValue replaces the value of any log field that looks like a secret.
const redactedValue = "<redacted>"

// secretWords mark a field key as secret when contained in it, case-insensitively.
var secretWords = []string{"password", "secret", "token", "auth"}

// isSecretKey reports whether a log field named key must be redacted.
// Matching is deliberately broad ("author" is redacted too): a hidden
// harmless value costs less than a leaked credential.
func isSecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// openLog returns the loader of the log module:
//
//	log.debug(msg [, fields])
//	log.info(msg [, fields])
//	log.warn(msg [, fields])
//	log.error(msg [, fields])
//
// Records go to Options.Logger with the fields table as attributes, in sorted
// key order; nested tables become attribute groups (lists stay lists). A
// "script" attribute carrying Options.ScriptName comes first when set. Any
// field whose key contains "password", "secret", "token" or "auth" (at any
// depth, case-insensitively) is logged as "<redacted>". Logging never raises
// on odd values: functions and userdata are logged by their tostring form.
func openLog(o *Options) lua.LGFunction {
	logAt := func(level slog.Level) lua.LGFunction {
		return func(L *lua.LState) int {
			msg := L.ToStringMeta(L.CheckAny(1)).String()
			var attrs []slog.Attr
			if o.ScriptName != "" {
				attrs = append(attrs, slog.String("script", o.ScriptName))
			}
			if fields := L.OptTable(2, nil); fields != nil {
				attrs = append(attrs, logAttrs(L, fields, 0, map[*lua.LTable]bool{})...)
			}
			ctx := L.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			o.Logger.LogAttrs(ctx, level, msg, attrs...)
			return 0
		}
	}
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, map[string]lua.LGFunction{
			"debug": logAt(slog.LevelDebug),
			"info":  logAt(slog.LevelInfo),
			"warn":  logAt(slog.LevelWarn),
			"error": logAt(slog.LevelError),
		})
		L.Push(mod)
		return 1
	}
}

// logAttrs converts a fields table to attributes sorted by key.
func logAttrs(L *lua.LState, t *lua.LTable, depth int, visiting map[*lua.LTable]bool) []slog.Attr {
	visiting[t] = true
	defer delete(visiting, t)
	sh, err := tableShape(t)
	if err != nil || sh.kind == shapeArray {
		// A list (or a table with odd keys) has no field names: log it whole.
		return []slog.Attr{slog.Any("fields", logValue(L, t, depth, visiting))}
	}
	attrs := make([]slog.Attr, 0, len(sh.keys))
	for _, k := range sh.keys {
		attrs = append(attrs, logAttr(L, k.name, t.RawGet(k.key), depth+1, visiting))
	}
	return attrs
}

// logAttr converts one field, redacting secrets and turning object tables
// into groups.
func logAttr(L *lua.LState, key string, v lua.LValue, depth int, visiting map[*lua.LTable]bool) slog.Attr {
	if isSecretKey(key) {
		return slog.String(key, redactedValue)
	}
	if t, ok := v.(*lua.LTable); ok && depth < maxNesting && !visiting[t] {
		if sh, err := tableShape(t); err == nil && sh.kind == shapeObject {
			return slog.Attr{Key: key, Value: slog.GroupValue(logAttrs(L, t, depth, visiting)...)}
		}
	}
	return slog.Any(key, logValue(L, v, depth, visiting))
}

// logValue converts a value leniently: it never fails, and maps nested in
// lists are redacted like top-level fields.
func logValue(L *lua.LState, v lua.LValue, depth int, visiting map[*lua.LTable]bool) any {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(x)
	case lua.LString:
		return string(x)
	case lua.LNumber:
		return goNumber(float64(x))
	case *lua.LTable:
		if depth >= maxNesting || visiting[x] {
			return "<cycle or too deep>"
		}
		visiting[x] = true
		defer delete(visiting, x)
		sh, err := tableShape(x)
		if err != nil {
			return L.ToStringMeta(x).String()
		}
		if sh.kind == shapeArray {
			list := make([]any, sh.n)
			for i := range list {
				list[i] = logValue(L, x.RawGetInt(i+1), depth+1, visiting)
			}
			return list
		}
		m := make(map[string]any, len(sh.keys))
		for _, k := range sh.keys {
			if isSecretKey(k.name) {
				m[k.name] = redactedValue
				continue
			}
			m[k.name] = logValue(L, x.RawGet(k.key), depth+1, visiting)
		}
		return m
	}
	if isJSONNull(v) {
		return nil
	}
	return L.ToStringMeta(v).String()
}
