// Package luatest runs Lua test files for mailbot scripts ("mailbot
// test"). Each *_test.lua file runs in its own Lua state with the
// "testing" module: t.load loads a script with its triggers captured (none
// starts), report.fire runs one handler now, and assertions (t.eq, t.ne,
// t.ok, t.match, t.error, t.fail) report file:line, expected and got.
//
// Nothing reaches the network or real state: every SMTP connection goes to
// an in-process capture server (luabind's dry-run redirection), mail.send
// enqueues into the capture too, http requests are refused (kind "denied"), time comes from a fake clock, env and
// os.getenv read only variables set with t.env.set, and scripts' relative
// paths resolve into a private temporary folder that holds a copy of the
// scripts folder. Every test starts from the state the file's top-level
// code left (clock, environment, files) with an empty capture, and loaded
// scripts load again, in a fresh Lua state, at their first use in the test.
package luatest
