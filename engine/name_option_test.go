package engine

import "testing"

// The name = "..." registration option (trigger ids <script>#<name>, used
// by "mailbot test" and "mailbot fire") is accepted by every registrar
// that takes options.
func TestNameOptionAccepted(t *testing.T) {
	h := newHarness(t, nil)
	h.write("named.lua", `
local probe = require("probe")
mailbot.every("1h", function() end, { name = "hourly" })
mailbot.cron("0 8 * * *", function() end, { name = "daily" })
mailbot.on_file({ dir = "drop", name = "drop" }, function() end)
mailbot.on_start(function() probe.hit("start", "ok") end)`)
	h.start()
	if got := h.waitHit("start").value; got != "ok" {
		t.Errorf("start = %q", got)
	}
	if st := h.e.Stats(); st.LoadErrors != 0 {
		t.Errorf("load errors = %d, want 0", st.LoadErrors)
	}
}
