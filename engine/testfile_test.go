package engine

import "testing"

// Test files of "mailbot test" (name_test.lua) sit among the scripts but
// are never loaded as scripts, at start or when written later.
func TestTestFilesNotLoaded(t *testing.T) {
	h := newHarness(t, nil)
	h.write("a_test.lua", `require("probe").hit("start", "test file loaded")`)
	h.write("a.lua", `mailbot.on_start(function() require("probe").hit("start", "a") end)`)
	h.start()
	if got := h.waitHit("start").value; got != "a" {
		t.Fatalf("first hit = %q", got)
	}
	h.write("b_test.lua", `require("probe").hit("start", "test file loaded")`)
	h.write("b.lua", `mailbot.on_start(function() require("probe").hit("start", "b") end)`)
	if got := h.waitHit("start").value; got != "b" {
		t.Fatalf("second hit = %q", got)
	}
	if st := h.e.Stats(); st.Loads != 2 || st.LoadErrors != 0 {
		t.Errorf("loads = %d, load errors = %d; want 2 and 0", st.Loads, st.LoadErrors)
	}
}

func TestIsTestFile(t *testing.T) {
	for p, want := range map[string]bool{
		"daily_test.lua": true, "/s/tests/x_test.lua": true, "daily.lua": false, "test.lua": false, "a_test.lua.bak": false,
	} {
		if got := IsTestFile(p); got != want {
			t.Errorf("IsTestFile(%q) = %v, want %v", p, got, want)
		}
	}
}
