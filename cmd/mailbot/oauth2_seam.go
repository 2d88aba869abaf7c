package main

import (
	"sync"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/smtp"
)

// testTokenSources gives accounts an OAuth2 token source in tests of the
// login paths (send, probe, exec, run), keyed by config path and account
// name so parallel tests do not see each other's. It is empty in the
// mailbot binary: there the account's oauth2 section sets the source.
var testTokenSources sync.Map // string -> testTokenSource

type testTokenSource struct {
	ts   smtp.TokenSource
	mech string
}

func testTokenKey(cfg *Config, account string) string {
	return cfg.path + "\x00" + account
}

// applyTestTokenSource sets acc's token source if a test registered one.
func applyTestTokenSource(cfg *Config, name string, acc *luabind.Account) {
	if v, ok := testTokenSources.Load(testTokenKey(cfg, name)); ok {
		s := v.(testTokenSource)
		acc.OAuth2, acc.OAuth2Mechanism = s.ts, s.mech
	}
}
