package luabind

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/sqldb"
)

// docsPath is the Lua API reference the tests below keep honest.
const docsPath = "../docs/lua-api.md"

// Markers that choose what TestDocs does with a ```lua block of the
// reference. Every block is compiled; beyond that:
//
//   - a block whose first line is docsRunnable runs standalone in a fresh
//     NewState (temporary BaseDir, fake environment, no network, no engine);
//   - a block right after the line docsSMTPMarker (an HTML comment, so
//     readers do not see it) runs against an in-process dev server: the
//     smtp module's dry run sends every connection there, whatever host the
//     example names;
//   - a block right after docsHTTPMarker runs with the http module's
//     connections sent to an in-process HTTPS server that plays the
//     example APIs (see TestDocsHTTPBlocks in http_test.go).
//
// Blocks that use the engine's mailbot table, port 465, or a server's
// failure modes stay compile-only.
const (
	docsRunnable   = "-- runnable"
	docsSMTPMarker = "<!-- doctest: smtp -->"
	docsHTTPMarker = "<!-- doctest: http -->"
)

// docsEnv is the environment runnable blocks see through env and os.getenv.
var docsEnv = map[string]string{
	"REPORT_TO":      "ops@example.com",
	"RELAY_PASSWORD": "dev-only-secret",
	"EMPTY":          "",
}

// docBlock is one ```lua block of the reference.
type docBlock struct {
	line int    // 1-based line of the opening fence
	mode string // "compile", "runnable" or "smtp"
	src  string
}

func (b docBlock) name() string { return "docs/lua-api.md:" + strconv.Itoa(b.line) }

// readDocBlocks extracts the ```lua blocks of the reference in order.
func readDocBlocks(t *testing.T) []docBlock {
	t.Helper()
	f, err := os.Open(docsPath)
	if err != nil {
		t.Fatalf("open the Lua API reference: %v", err)
	}
	defer f.Close()
	var (
		blocks []docBlock
		cur    *docBlock
		body   []string
		prev   string // previous non-blank line outside blocks
		n      int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur == nil {
			switch {
			case trimmed == "```lua":
				cur = &docBlock{line: n, mode: "compile"}
				switch prev {
				case docsSMTPMarker:
					cur.mode = "smtp"
				case docsHTTPMarker:
					cur.mode = "http"
				}
				body = body[:0]
			case strings.HasPrefix(trimmed, "```lua"):
				t.Errorf("%s:%d: write ```lua fences without attributes, got %q", docsPath, n, trimmed)
			}
			if trimmed != "" {
				prev = trimmed
			}
			continue
		}
		if trimmed == "```" {
			cur.src = strings.Join(body, "\n") + "\n"
			if len(body) > 0 && strings.TrimSpace(body[0]) == docsRunnable {
				if cur.mode != "compile" {
					t.Errorf("%s: a block is either %q or after a doctest marker, not both", cur.name(), docsRunnable)
				}
				cur.mode = "runnable"
			}
			blocks = append(blocks, *cur)
			cur, prev = nil, ""
			continue
		}
		body = append(body, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", docsPath, err)
	}
	if cur != nil {
		t.Fatalf("%s: ```lua block is never closed", cur.name())
	}
	return blocks
}

// blocksByMode returns the blocks of one mode, failing the test when there
// are fewer than min: a broken marker must not silently skip the checks.
func blocksByMode(t *testing.T, blocks []docBlock, mode string, min int) []docBlock {
	t.Helper()
	var out []docBlock
	for _, b := range blocks {
		if b.mode == mode {
			out = append(out, b)
		}
	}
	if len(out) < min {
		t.Fatalf("found %d %s blocks in %s, want at least %d", len(out), mode, docsPath, min)
	}
	return out
}

func TestDocsBlocksCompile(t *testing.T) {
	blocks := readDocBlocks(t)
	if len(blocks) < 50 {
		t.Fatalf("found %d ```lua blocks in %s, want at least 50", len(blocks), docsPath)
	}
	for _, b := range blocks {
		if _, err := CompileString(b.src, b.name()); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// docsState builds the state a runnable block runs in, with the mail
// module's relative paths and the fs module anchored in a fresh directory.
func docsState(t *testing.T, smtpOpts SMTPOptions) *lua.LState {
	t.Helper()
	dir := t.TempDir()
	L := NewState(Options{
		ScriptsDir: dir,
		BaseDir:    dir,
		ScriptName: "docs.lua",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Getenv: func(k string) (string, bool) {
			v, ok := docsEnv[k]
			return v, ok
		},
		Location: time.UTC,
		SMTP:     smtpOpts,
		SQL:      docsDatabases(t, dir),
	})
	t.Cleanup(func() {
		CloseResources(L)
		L.Close()
	})
	return L
}

// docsDatabases returns the databases the sql examples use: "sales", a
// read-only SQLite file with a small orders table, and "scratch", an empty
// read-write one.
func docsDatabases(t *testing.T, dir string) *sqldb.Set {
	t.Helper()
	sales := filepath.Join(dir, "sales.db")
	seedSQLite(t, sales,
		`CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, day DATE, note TEXT)`,
		`INSERT INTO orders VALUES (1, 'Ada', 12.5, '2026-03-01', NULL), (2, 'Bob', 7, '2026-03-02', 'late'),
			(3, 'Cy', 3.25, '2026-03-02', '')`)
	set := sqldb.NewSet(
		sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: sales, ReadOnly: true},
		sqldb.Config{Name: "scratch", Driver: sqldb.SQLite, Path: filepath.Join(dir, "scratch.db")},
	)
	t.Cleanup(func() { set.Close() })
	return set
}

// runDocBlock runs one block under a deadline, so that an example that
// blocks fails the test instead of hanging it.
func runDocBlock(t *testing.T, L *lua.LState, b docBlock) {
	t.Helper()
	proto, err := CompileString(b.src, b.name())
	if err != nil {
		t.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	L.SetContext(ctx)
	defer L.RemoveContext()
	if err := DoProto(L, proto); err != nil {
		t.Fatalf("%s raised: %s", b.name(), DescribeError(err))
	}
}

func TestDocsRunnableBlocks(t *testing.T) {
	for _, b := range blocksByMode(t, readDocBlocks(t), "runnable", 12) {
		t.Run("line_"+strconv.Itoa(b.line), func(t *testing.T) {
			if strings.Contains(b.src, "mailbot.") {
				t.Fatalf("%s is marked %q but uses the engine's mailbot table", b.name(), docsRunnable)
			}
			runDocBlock(t, docsState(t, SMTPOptions{}), b)
		})
	}
}

func TestDocsSMTPBlocks(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{}) // any user and password after STARTTLS
	opts := SMTPOptions{
		Accounts: map[string]Account{
			"relay": {Host: "smtp.example.com", Port: 587, TLS: "starttls", Username: "reports@example.com",
				Password: func() (string, error) { return "dev-only-secret", nil }},
		},
		DefaultAccount: "relay",
		DryRun:         &DryRun{Addr: srv.Addr(), RootCAs: srv.CertPool()},
	}
	for _, b := range blocksByMode(t, readDocBlocks(t), "smtp", 6) {
		t.Run("line_"+strconv.Itoa(b.line), func(t *testing.T) {
			before := len(srv.Messages())
			runDocBlock(t, docsState(t, opts), b)
			sends := strings.Contains(b.src, ":sendmail(") || strings.Contains(b.src, ":send_message(")
			if got := len(srv.Messages()); sends && got == before {
				t.Errorf("%s sends a message, but the server received none", b.name())
			}
		})
	}
}

// TestDocsCoverEveryFunction fails when a Lua function exists that the
// reference does not name, so new functions cannot go undocumented.
func TestDocsCoverEveryFunction(t *testing.T) {
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	L := NewState(Options{})
	defer L.Close()

	var want []string
	for _, mod := range []string{"json", "csv", "template", "log", "fs", "time", "env", "smtp", "mail", "http", "sql", "chart", "xlsx"} {
		if err := L.DoString(`MOD = require("` + mod + `")`); err != nil {
			t.Fatal(err)
		}
		tbl, ok := L.GetGlobal("MOD").(*lua.LTable)
		if !ok {
			t.Fatalf("require(%q) did not return a table", mod)
		}
		tbl.ForEach(func(k, v lua.LValue) {
			if _, isFn := v.(*lua.LFunction); isFn {
				want = append(want, mod+"."+k.String()+"(")
			} else {
				want = append(want, mod+"."+k.String())
			}
		})
	}
	methods, ok := L.GetField(L.GetTypeMetatable(smtpClientTypeName), "__index").(*lua.LTable)
	if !ok {
		t.Fatal("the smtp client metatable has no method table")
	}
	methods.ForEach(func(k, _ lua.LValue) { want = append(want, "c:"+k.String()+"(") })
	for prefix, typ := range map[string]string{"book:": xlsxBookTypeName, "sheet:": xlsxSheetTypeName} {
		methods, ok := L.GetField(L.GetTypeMetatable(typ), "__index").(*lua.LTable)
		if !ok {
			t.Fatalf("the %s metatable has no method table", typ)
		}
		methods.ForEach(func(k, _ lua.LValue) { want = append(want, prefix+k.String()+"(") })
	}
	if err := L.DoString(`require("sql")`); err != nil {
		t.Fatal(err)
	}
	dbMethods, ok := L.GetField(L.GetTypeMetatable(sqlDBTypeName), "__index").(*lua.LTable)
	if !ok {
		t.Fatal("the sql database metatable has no method table")
	}
	dbMethods.ForEach(func(k, _ lua.LValue) { want = append(want, "db:"+k.String()+"(") })
	// The message methods live behind an __index function; list them here
	// and check that each one exists.
	for _, m := range []string{"as_string", "set_header", "add_header", "header", "attach", "recipients", "envelope_from"} {
		if err := L.DoString(`local m = require("mail").message{ from = "a@example.com" }
			assert(type(m.` + m + `) == "function")`); err != nil {
			t.Errorf("message method %s: %v", m, err)
		}
		want = append(want, "m:"+m+"(")
	}
	// The engine's table (engine/script.go); luabind cannot import engine.
	want = append(want, "mailbot.script", "mailbot.on_file(", "mailbot.every(", "mailbot.cron(", "mailbot.on_start(", "mailbot.on_dead_letter(", "mailbot.on_run_failed(",
		"mailbot.state.get(", "mailbot.state.set(", "mailbot.state.delete(", "mailbot.state.all(", "mailbot.state.flush(")

	sort.Strings(want)
	for _, w := range want {
		// A call may be shown with a table argument: m:attach{ ... }.
		found := strings.Contains(doc, w) ||
			strings.HasSuffix(w, "(") && strings.Contains(doc, strings.TrimSuffix(w, "(")+"{")
		if !found {
			t.Errorf("%s does not document %s", docsPath, strings.TrimSuffix(w, "("))
		}
	}
}
