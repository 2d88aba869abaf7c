package luatest

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Tests do not reach the network through the http module either, even
// when the host's options would allow any host.
func TestNoHTTP(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	dir := fixture(t, map[string]string{
		"fetch_test.lua": `local t = require("testing")
local http = require("http")
t.test("denied", function()
  t.error(function() http.get("` + srv.URL + `/report") end, "mailbot test does not reach the network")
  local ok, err = pcall(http.post, "` + srv.URL + `/hook", { body = "x" })
  t.eq(err.kind, "denied")
end)`})
	res, out := run(t, dir, nil)
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
	if hits.Load() != 0 {
		t.Errorf("the server got %d requests from a test", hits.Load())
	}
}
