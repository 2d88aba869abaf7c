package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// dockerfile returns the repository's Dockerfile as instructions: each
// logical line (continuations joined), keyword upper-cased first.
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cur string
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		kw, rest, _ := strings.Cut(cur, " ")
		out = append(out, [2]string{strings.ToUpper(kw), strings.TrimSpace(rest)})
		cur = ""
	}
	return out
}

// TestDockerfile checks the image's key properties, since docker cannot
// run here: multi-stage from golang:1.26, a static -trimpath build,
// distroless or scratch at the end, a non-root user, both volumes, and a
// HEALTHCHECK through "mailbot health" (there is no curl in the image).
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := dockerfile(t)
	var froms []string
	final := map[string][]string{} // instructions of the last stage
	for _, in := range ins {
		if in[0] == "FROM" {
			froms = append(froms, in[1])
			final = map[string][]string{}
			continue
		}
		final[in[0]] = append(final[in[0]], in[1])
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("want a multi-stage build from golang:1.26, got FROM %q", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") && !strings.HasPrefix(last, "scratch") {
		t.Errorf("final stage %q is neither distroless/static nor scratch", last)
	}
	if build := buildLine(t, ins); !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-trimpath") {
		t.Errorf("build line %q lacks CGO_ENABLED=0 or -trimpath", build)
	}
	users := final["USER"]
	if len(users) == 0 {
		t.Error("final stage has no USER: it would run as root")
	}
	for _, u := range users {
		if name, _, _ := strings.Cut(u, ":"); name == "root" || name == "0" {
			t.Errorf("USER %s is root", u)
		}
	}
	vols := strings.Join(final["VOLUME"], " ")
	for _, v := range []string{`"/etc/mailbot"`, `"/var/lib/mailbot"`} {
		if !strings.Contains(vols, v) {
			t.Errorf("VOLUME %s missing (have %s)", v, vols)
		}
	}
	hc := strings.Join(final["HEALTHCHECK"], " ")
	if !regexp.MustCompile(`CMD \["/usr/local/bin/mailbot", "health"`).MatchString(hc) {
		t.Errorf("HEALTHCHECK %q does not run mailbot health", hc)
	}
	if env := strings.Join(final["ENV"], " "); !strings.Contains(env, "MAILBOT_CONFIG=/etc/mailbot/mailbot.yaml") {
		t.Errorf("ENV %q does not point MAILBOT_CONFIG at /etc/mailbot/mailbot.yaml", env)
	}
	if ep := strings.Join(final["ENTRYPOINT"], " "); !strings.Contains(ep, "/usr/local/bin/mailbot") {
		t.Errorf("ENTRYPOINT %q", ep)
	}
	if _, err := os.Stat(filepath.Join("..", "..", ".dockerignore")); err != nil {
		t.Errorf(".dockerignore: %v", err)
	}
}

// buildLine is the RUN instruction with "go build".
func buildLine(t *testing.T, ins [][2]string) string {
	t.Helper()
	for _, in := range ins {
		if in[0] == "RUN" && strings.Contains(in[1], "go build") {
			return in[1]
		}
	}
	t.Fatal("no RUN ... go build in the Dockerfile")
	return ""
}

// shellWords splits a command line on blanks, honouring double quotes.
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// TestStaticBuild runs the Dockerfile's own build command and checks the
// binary is static: no ELF interpreter, no shared libraries.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mailbot again; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("checks a Linux ELF binary")
	}
	t.Parallel()
	words := shellWords(buildLine(t, dockerfile(t)))
	env := cleanEnv()
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("build line is not \"[VAR=value...] go build ...\": %q", words)
	}
	out := filepath.Join(t.TempDir(), "mailbot")
	args := words[2:]
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, append([]string{"build", "-buildvcs=false"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if v, err := exec.Command(out, "version").Output(); err != nil || !strings.HasPrefix(string(v), "mailbot ") {
		t.Errorf("the static binary does not run: %v %q", err, v)
	}
}
