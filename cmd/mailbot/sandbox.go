package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/mailbot/mailbot/luabind"
)

// filesArea is the folder under state_dir that strict scripts may use for
// their own files; the rest of state_dir (ledger, outbox, mailbot.state,
// last runs, dry-run output) is closed to them.
const filesArea = "files"

// SecretKey is one config key that names where a secret is: an environment
// variable (Kind "env") or a file (Kind "file").
type SecretKey struct {
	// Path is the key's dotted path, e.g. accounts.relay.password_env.
	Path []string
	Kind string
	// Value is the variable name, or the file path resolved against the
	// config's folder.
	Value string
}

// secretHints tells script authors, per top-level section, how to use a
// secret without reading it.
var secretHints = map[string]string{
	"accounts": "use c:login()",
}

// secretSectionHints override secretHints for secrets in a section of
// that name, wherever it is.
var secretSectionHints = map[string]string{
	"dkim": "mailbot DKIM-signs the account's mail with it",
}

// SecretKeys returns every secret key set in the config, sorted by path.
// A key is secret when its struct field carries the tag secret:"env" or
// secret:"file", so a new *_env or *_file key only needs the tag to be
// kept from scripts.
func (c *Config) SecretKeys() []SecretKey {
	var out []SecretKey
	var walk func(v reflect.Value, path []string)
	walk = func(v reflect.Value, path []string) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Map:
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
			for _, k := range keys {
				walk(v.MapIndex(k), append(append([]string(nil), path...), fmt.Sprint(k)))
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i), append(append([]string(nil), path...), strconv.Itoa(i)))
			}
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				name := strings.Split(f.Tag.Get("yaml"), ",")[0]
				p := append(append([]string(nil), path...), name)
				kind := f.Tag.Get("secret")
				if kind == "" {
					walk(v.Field(i), p)
					continue
				}
				s, _ := v.Field(i).Interface().(string)
				if s == "" {
					continue
				}
				if kind == "file" {
					s = c.Resolve(s)
				}
				out = append(out, SecretKey{Path: p, Kind: kind, Value: s})
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), nil)
	return out
}

// Secrets builds the registry of secrets scripts may not read from
// SecretKeys.
func (c *Config) Secrets() *luabind.Secrets {
	reg := luabind.NewSecrets()
	for _, k := range c.SecretKeys() {
		owner := strings.Join(k.Path[:len(k.Path)-1], ".")
		if len(k.Path) >= 3 && k.Path[0] == "accounts" {
			owner = "account " + k.Path[1]
		}
		hint := secretHints[k.Path[0]]
		if len(k.Path) >= 2 {
			if h, ok := secretSectionHints[k.Path[len(k.Path)-2]]; ok {
				hint = h
			}
		}
		switch k.Kind {
		case "env":
			reg.AddEnv(k.Value, owner, hint)
		case "file":
			reg.AddFile(k.Value, owner, hint)
		}
	}
	c.addOAuthSecrets(reg)
	return reg
}

// validateFSRoots checks that every listed fs_roots folder is a folder.
func (c *Config) validateFSRoots() []Problem {
	var probs []Problem
	if c.FSRoots != nil && len(c.FSRoots) == 0 {
		probs = append(probs, c.problem("must list at least one folder (leave it out for the default)", "fs_roots"))
	}
	for i, r := range c.FSRoots {
		if r == "" {
			probs = append(probs, c.problem("must not be empty", "fs_roots", strconv.Itoa(i)))
			continue
		}
		fi, err := os.Stat(c.Resolve(r))
		switch {
		case err != nil:
			probs = append(probs, c.problem(fmt.Sprintf("cannot use %s: %v", r, unwrapPathError(err)), "fs_roots"))
		case !fi.IsDir():
			probs = append(probs, c.problem(fmt.Sprintf("%s is not a folder", r), "fs_roots"))
		}
	}
	return probs
}

// applySandbox sets the sandbox of o from the config: the library subset,
// the secrets scripts cannot read, and under strict the folders their
// files may be in (fs_roots) with the state store kept closed. It does not
// create state_dir/files, the scripts' own area there (see makeFilesArea).
func (c *Config) applySandbox(o *luabind.Options) {
	if c.Sandbox == "trusted" {
		o.Sandbox = luabind.SandboxTrusted
	}
	o.Secrets = c.Secrets()
	state := c.Resolve(c.StateDir)
	files := filepath.Join(state, filesArea)
	o.FSDenied = []string{state}
	if c.FSRoots == nil {
		o.FSRoots = []string{c.dir, c.Resolve(c.ScriptsDir), files}
		o.FSRootsSource = "default: the config's folder, scripts_dir, state_dir/files and on_file folders"
		return
	}
	o.FSRoots = make([]string, 0, len(c.FSRoots))
	for _, r := range c.FSRoots {
		o.FSRoots = append(o.FSRoots, c.Resolve(r))
	}
	o.FSRootsFixed = true
	o.FSRootsSource = "config line " + strconv.Itoa(lineOf(c.root, "fs_roots"))
}

// checkDevListen validates dev_server.listen: host:port with a port of
// 1-65535 (0 picks a free one, as tests do), and a loopback host unless allowRemote. It returns a problem
// message, or "" when the address is fine (empty means the default).
func checkDevListen(listen string, allowRemote bool) string {
	if listen == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Sprintf("want host:port, got %q", listen)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q must be 1-65535 (or 0 for any free port)", port)
	}
	if allowRemote || host == "localhost" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return ""
	}
	return fmt.Sprintf("%s is not a loopback address: the dev server accepts any login, so listening beyond this machine needs dev_server.allow_remote: true", listen)
}

// makeFilesArea creates state_dir/files for run and exec.
func (c *Config) makeFilesArea() error {
	if err := os.MkdirAll(filepath.Join(c.Resolve(c.StateDir), filesArea), 0o755); err != nil {
		return fmt.Errorf("state_dir files area: %w", err)
	}
	return nil
}
