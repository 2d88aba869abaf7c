package luabind

import (
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	vars := map[string]string{"MAILBOT_HOST": "mx.example.org", "EMPTY": ""}
	getenv := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	tests := []struct {
		name, src string
		want      string // returned string, or "" when wantErr is set
		wantErr   string
	}{
		{"get set", `return env.get("MAILBOT_HOST")`, "mx.example.org", ""},
		{"get unset is nil", `return tostring(env.get("NOPE"))`, "nil", ""},
		{"get default", `return env.get("NOPE", "fallback")`, "fallback", ""},
		{"get empty is not the default", `return "[" .. env.get("EMPTY", "fallback") .. "]"`, "[]", ""},
		{"require set", `return env.require("MAILBOT_HOST")`, "mx.example.org", ""},
		{"require unset", `return env.require("SMTP_PASSWORD")`, "", "environment variable SMTP_PASSWORD is not set"},
		{"require empty", `return env.require("EMPTY")`, "", "environment variable EMPTY is set but empty"},
		{"bad name", `return env.get("A=B")`, "", "invalid environment variable name"},
	}
	L := newTestState(t, Options{Getenv: getenv})
	if _, err := evalLua(L, `env = require("env")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := evalLua(L, tc.src)
			if tc.wantErr != "" {
				if msg := luaErrorMessage(err); !strings.Contains(msg, tc.wantErr) {
					t.Errorf("error = %q, want it to contain %q", msg, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := out[0].String(); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.src, got, tc.want)
			}
		})
	}
}

func TestEnvLuaFile(t *testing.T) {
	L := newTestState(t, Options{Getenv: func(k string) (string, bool) {
		if k == "REPORT_TO" {
			return "ops@example.org", true
		}
		return "", false
	}})
	runLuaTestFile(t, L, "testdata/toolbox_env.lua")
}
