package luabind

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const testSecret = "s3cr3t-hunter2"

// secretFixture is a folder with a password file registered as a secret of
// account relay, and a fake environment whose RELAY_PASSWORD is one too.
type secretFixture struct {
	dir, file string
	opts      Options
}

func newSecretFixture(t *testing.T, sandbox Sandbox) secretFixture {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "relay.secret")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("relay.secret", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "abslink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(file, filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	// A module file that is the secret, for require.
	if err := os.Symlink("relay.secret", filepath.Join(dir, "pw.lua")); err != nil {
		t.Fatal(err)
	}
	sec := NewSecrets()
	sec.AddEnv("RELAY_PASSWORD", "account relay", "use c:login()")
	sec.AddFile(file, "account relay", "use c:login()")
	env := map[string]string{"RELAY_PASSWORD": testSecret, "REPORT_TO": "ops@example.com"}
	return secretFixture{dir: dir, file: file, opts: Options{
		ScriptsDir: dir, BaseDir: dir, Sandbox: sandbox, Secrets: sec,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}}
}

func TestScriptsCannotReadSecrets(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	envErr := "RELAY_PASSWORD holds a secret of account relay; use c:login()"
	fileErr := "holds a secret of account relay; use c:login()"
	procErr := "not allowed (they hold secrets)"
	type tc struct {
		name, src string
		want      map[Sandbox]string // substring of the error per sandbox
	}
	both := func(s string) map[Sandbox]string { return map[Sandbox]string{SandboxStrict: s, SandboxTrusted: s} }
	tests := []tc{
		{"env.get", `return require("env").get("RELAY_PASSWORD")`, both(envErr)},
		{"env.get with default", `return require("env").get("RELAY_PASSWORD", "x")`, both(envErr)},
		{"env.require", `return require("env").require("RELAY_PASSWORD")`, both(envErr)},
		{"os.getenv", `return os.getenv("RELAY_PASSWORD")`, both(envErr)},
		{"fs.read direct", `return require("fs").read("relay.secret")`, both(fileErr)},
		{"fs.read absolute", `return require("fs").read(DIR .. "/relay.secret")`, both(fileErr)},
		{"fs.read via ..", `return require("fs").read("sub/../relay.secret")`, both(fileErr)},
		{"fs.read via symlink", `return require("fs").read("link")`, both(fileErr)},
		{"fs.read via hard link", `return require("fs").read("hardlink")`, both(fileErr)},
		// os.Root refuses absolute symlinks outright under strict.
		{"fs.read via absolute symlink", `return require("fs").read("abslink")`,
			map[Sandbox]string{SandboxStrict: "outside fs_roots", SandboxTrusted: fileErr}},
		{"fs.move then read", `require("fs").move("relay.secret", "copy.txt"); return require("fs").read("copy.txt")`, both(fileErr)},
		{"fs.write over it", `require("fs").write("relay.secret", "x")`, both(fileErr)},
		{"csv.read", `return require("csv").read("relay.secret")`, both(fileErr)},
		{"template.render_file", `return require("template").render_file("link", {})`, both(fileErr)},
		{"mail attachment", `return require("mail").message{from = "a@example.com", to = "b@example.com", text = "x",
			attachments = {{path = "hardlink"}}}:as_string()`, both(fileErr)},
		{"require", `return require("pw")`, both(fileErr)},
		{"/proc/self/environ", `return require("fs").read("/proc/self/environ")`,
			both(procErr)},
		{"/proc/thread-self/environ", `return require("fs").read("/proc/thread-self/environ")`,
			both(procErr)},
		{"/proc/pid/environ", `return require("fs").read("/proc/` + pid + `/environ")`,
			both(procErr)},
		{"/proc/pid/task/pid/environ", `return require("fs").read("/proc/` + pid + `/task/` + pid + `/environ")`,
			both(procErr)},
		{"/proc/self/mem", `return require("fs").read("/proc/self/mem")`,
			both(procErr)},
		{"via /proc/self/root", `return require("fs").read("/proc/self/root/proc/self/environ")`,
			both(procErr)},
		{"io.open", `return io.open(DIR .. "/link"):read("*a")`, map[Sandbox]string{SandboxTrusted: fileErr}},
		{"io.lines", `for l in io.lines(DIR .. "/relay.secret") do return l end`, map[Sandbox]string{SandboxTrusted: fileErr}},
		{"io.open environ", `return io.open("/proc/self/environ"):read("*a")`, map[Sandbox]string{SandboxTrusted: procErr}},
		{"dofile", `return dofile(DIR .. "/hardlink")`, map[Sandbox]string{SandboxTrusted: fileErr}},
		{"os.rename", `assert(os.rename(DIR .. "/link", DIR .. "/x"))`, map[Sandbox]string{SandboxTrusted: fileErr}},
		{"os.remove", `assert(os.remove(DIR .. "/relay.secret"))`, map[Sandbox]string{SandboxTrusted: fileErr}},
	}
	for _, sb := range []Sandbox{SandboxStrict, SandboxTrusted} {
		for _, tc := range tests {
			want, ok := tc.want[sb]
			if !ok {
				continue
			}
			t.Run(sb.String()+"/"+tc.name, func(t *testing.T) {
				fx := newSecretFixture(t, sb)
				L := newTestState(t, fx.opts)
				L.SetGlobal("DIR", luaString(fx.dir))
				out, err := evalLua(L, tc.src)
				msg := luaErrorMessage(err)
				if err == nil || !strings.Contains(msg, want) {
					t.Fatalf("got %v, error %q; want an error containing %q", out, msg, want)
				}
				if strings.Contains(msg, testSecret) {
					t.Errorf("the error shows the secret: %q", msg)
				}
				for _, v := range out {
					if strings.Contains(v.String(), testSecret) {
						t.Errorf("the script got the secret: %q", v.String())
					}
				}
				b, rerr := os.ReadFile(fx.file)
				if rerr != nil || string(b) != testSecret+"\n" {
					t.Errorf("the secret file was changed or moved: %q, %v", b, rerr)
				}
			})
		}
	}
}

func TestNonSecretsStayReadable(t *testing.T) {
	for _, sb := range []Sandbox{SandboxStrict, SandboxTrusted} {
		t.Run(sb.String(), func(t *testing.T) {
			fx := newSecretFixture(t, sb)
			if err := os.WriteFile(filepath.Join(fx.dir, "notes.txt"), []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
			L := newTestState(t, fx.opts)
			if got := evalString(t, L, `return require("env").get("REPORT_TO") .. os.getenv("REPORT_TO")`); got != "ops@example.comops@example.com" {
				t.Errorf("env = %q", got)
			}
			if got := evalString(t, L, `return require("fs").read("notes.txt")`); got != "hello" {
				t.Errorf("fs.read = %q", got)
			}
			if got := evalString(t, L, `return require("fs").stat("relay.secret").mode`); got != "0600" {
				t.Errorf("fs.stat of the secret = %q, want its metadata", got)
			}
		})
	}
}
