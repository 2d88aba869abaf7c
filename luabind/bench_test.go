//go:build unix

package luabind_test

// Benchmarks of c:sendmail against the Go client it wraps. The target,
// measured here and not asserted (a shared machine's timing is not a test
// verdict): a Lua script sending messages over one connection reaches at
// least 0.95x the msgs/s of Go code doing the same, that is the binding
// (argument checks, string-to-bytes copy, result table, context lookup)
// costs under 5% of a pipelined loopback transaction.
//
// Both sides send the same ~1 KB message to smtptest.Sink over one
// plain-text connection with PIPELINING, under a cancellable context (the
// engine always runs scripts with one), after EHLO. The Lua side runs its
// b.N sendmail calls in one chunk, so the per-call overhead is measured,
// not state creation or compilation.
//
// Besides msgs/s, each reports "cpu-us/msg": the process's CPU time (client
// and sink together) per message. The sink's share is the same on both
// sides, so the difference is the binding's CPU cost, a figure that other
// load on the machine disturbs far less than wall-clock throughput.
//
// Run: go test -run='^$' -bench='Sendmail|SendBatch' -benchtime=2s -count=3 ./luabind
// and compare the medians. BenchmarkLuaSendmailChunking and
// BenchmarkLuaSendBatch measure the same against a sink offering CHUNKING.

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

const (
	benchFrom = "bench@example.org"
	benchTo   = "sink@example.org"
)

// benchMessage returns a plain-text message of about size bytes with CRLF
// line ends and no line starting with a dot, so that its wire encoding
// needs no change and both sides do the same work.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: " + benchFrom + "\r\nTo: " + benchTo + "\r\nSubject: benchmark\r\n" +
		"Message-ID: <bench@example.org>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	for i := 0; b.Len() < size; i++ {
		line := strings.Repeat(alphabet[i%len(alphabet):]+alphabet[:i%len(alphabet)], 2)[:76]
		b.WriteString(line + "\r\n")
	}
	return b.Bytes()
}

// cpuTime returns the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportSent reports msgs/s and CPU time per message, and checks that the
// sink got every message.
func reportSent(b *testing.B, sink *smtptest.Sink, cpu time.Duration) {
	b.Helper()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-us/msg")
	if got := sink.Messages(); got != int64(b.N) {
		b.Fatalf("sink accepted %d messages, want %d", got, b.N)
	}
}

// BenchmarkGoSendmail is the reference: Client.SendMail in a Go loop.
func BenchmarkGoSendmail(b *testing.B) {
	sink := smtptest.NewSink(b)
	msg := benchMessage(1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The same dialer settings as smtp.connect{tls = "none"} chooses.
	d := smtp.Dialer{TLS: smtp.TLSNone, Timeout: 30 * time.Second, CommandTimeout: 30 * time.Second}
	c, err := d.Dial(ctx, sink.Addr())
	if err != nil {
		b.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		b.Fatalf("EHLO: %v", err)
	}
	to := []string{benchTo}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if _, err := c.SendMail(ctx, benchFrom, to, msg, nil); err != nil {
			b.Fatalf("SendMail: %v", err)
		}
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	reportSent(b, sink, cpu)
}

// BenchmarkLuaSendmail runs c:sendmail b.N times in one Lua chunk.
func BenchmarkLuaSendmail(b *testing.B) {
	benchLua(b, smtptest.NewSink(b), luaSendmailLoop)
}

// BenchmarkLuaSendmailChunking is BenchmarkLuaSendmail against a sink that
// offers CHUNKING: one round trip per c:sendmail instead of two.
func BenchmarkLuaSendmailChunking(b *testing.B) {
	benchLua(b, smtptest.NewSink(b, smtptest.WithChunking()), luaSendmailLoop)
}

// BenchmarkLuaSendBatch sends b.N messages with c:send_batch, 256 items per
// call, to a sink that offers CHUNKING (16 messages in flight).
func BenchmarkLuaSendBatch(b *testing.B) {
	benchLua(b, smtptest.NewSink(b, smtptest.WithChunking()), `
local c, from, to, msg = client, FROM, { TO }, MSG
local items = {}
for i = 1, 256 do items[i] = { from = from, to = to, msg = msg } end
local left = N
while left > 0 do
  local k = math.min(256, left)
  for i = k + 1, #items do items[i] = nil end
  for i, r in ipairs(c:send_batch(items)) do
    if not r.ok then error("item " .. i .. ": " .. tostring(r.error)) end
  end
  left = left - k
end
`)
}

const luaSendmailLoop = `
local c, from, to, msg = client, FROM, { TO }, MSG
for i = 1, N do
  c:sendmail(from, to, msg)
end
`

// benchLua runs loop (which sends N messages with the global client) once
// with N = b.N, timed.
func benchLua(b *testing.B, sink *smtptest.Sink, loopSrc string) {
	msg := benchMessage(1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	L := luabind.NewState(luabind.Options{})
	defer L.Close()
	defer luabind.CloseResources(L)
	_, stop := luabind.StartRun(ctx, L) // as the engine runs scripts: memory limit on
	defer stop()
	L.SetGlobal("PORT", lua.LNumber(sink.Port()))
	L.SetGlobal("FROM", lua.LString(benchFrom))
	L.SetGlobal("TO", lua.LString(benchTo))
	L.SetGlobal("MSG", lua.LString(msg))
	run := func(name, src string) {
		b.Helper()
		proto, err := luabind.CompileString(src, name)
		if err != nil {
			b.Fatal(err)
		}
		if err := luabind.DoProto(L, proto); err != nil {
			b.Fatalf("%s: %s", name, luabind.DescribeError(err))
		}
	}
	run("setup", `
local smtp = require("smtp")
client = smtp.connect{ host = "127.0.0.1", port = PORT, tls = "none" }
client:ehlo_or_helo_if_needed()
`)
	loop, err := luabind.CompileString(loopSrc, "loop")
	if err != nil {
		b.Fatal(err)
	}
	L.SetGlobal("N", lua.LNumber(b.N))
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	cpu0 := cpuTime()
	if err := luabind.DoProto(L, loop); err != nil {
		b.Fatalf("loop: %s", luabind.DescribeError(err))
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	reportSent(b, sink, cpu)
	run("quit", `client:quit()`)
}

// BenchmarkLuaLoop measures the VM's per-instruction cost under a plain
// context (L.SetContext, how runs were started before limits.memory) and
// under StartRun, whose context's Done doubles as the memory hook.
func BenchmarkLuaLoop(b *testing.B) {
	proto, err := luabind.CompileString(`
local t, s = {}, 0
for i = 1, N do
  s = s + i % 7
  t[i % 64 + 1] = s
end`, "loop")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"SetContext", "StartRun"} {
		b.Run(mode, func(b *testing.B) {
			L := luabind.NewState(luabind.Options{})
			defer L.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if mode == "StartRun" {
				_, stop := luabind.StartRun(ctx, L)
				defer stop()
			} else {
				L.SetContext(ctx)
			}
			L.SetGlobal("N", lua.LNumber(b.N))
			b.ResetTimer()
			if err := luabind.DoProto(L, proto); err != nil {
				b.Fatal(err)
			}
		})
	}
}
