package main

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"

	"github.com/mailbot/mailbot/ops"
)

// HTTPConfig is the http section: the operations endpoint (metrics,
// health, status API and page). Absent: no endpoint.
//
//	http:
//	  listen: 127.0.0.1:9725
//	  auth:
//	    basic: { username: ops, password_env: MAILBOT_HTTP_PASSWORD }
//	    # or: bearer: { token_file: /etc/mailbot/http-token }
type HTTPConfig struct {
	// Listen is host:port; default 127.0.0.1:9725. A listen address
	// beyond loopback requires auth.
	Listen string `yaml:"listen"`
	// Auth, when present, requires credentials on every route but
	// /healthz and /readyz.
	Auth *HTTPAuthConfig `yaml:"auth"`
}

// HTTPAuthConfig requires HTTP basic or bearer authentication: exactly one
// of Basic and Bearer.
type HTTPAuthConfig struct {
	Basic  *HTTPBasicConfig  `yaml:"basic"`
	Bearer *HTTPBearerConfig `yaml:"bearer"`
}

// HTTPBasicConfig is a user name and where its password is (never
// inline).
type HTTPBasicConfig struct {
	Username string `yaml:"username"`
	// Password exists only to reject an inline password with advice.
	Password     any    `yaml:"password"`
	PasswordEnv  string `yaml:"password_env" secret:"env"`
	PasswordFile string `yaml:"password_file" secret:"file"`
}

// HTTPBearerConfig says where the bearer token is (never inline).
type HTTPBearerConfig struct {
	// Token exists only to reject an inline token with advice.
	Token     any    `yaml:"token"`
	TokenEnv  string `yaml:"token_env" secret:"env"`
	TokenFile string `yaml:"token_file" secret:"file"`
}

// DefaultHTTPListen is http.listen when the section leaves it out.
const DefaultHTTPListen = "127.0.0.1:9725"

func init() {
	secretHints["http"] = "mailbot's HTTP endpoint checks requests against it"
	for name, t := range map[string]reflect.Type{
		"main.HTTPConfig":       reflect.TypeFor[HTTPConfig](),
		"main.HTTPAuthConfig":   reflect.TypeFor[HTTPAuthConfig](),
		"main.HTTPBasicConfig":  reflect.TypeFor[HTTPBasicConfig](),
		"main.HTTPBearerConfig": reflect.TypeFor[HTTPBearerConfig](),
	} {
		configTypes[name] = t
	}
}

// httpListen returns http.listen with its default.
func (c *Config) httpListen() string {
	if c.HTTP == nil || c.HTTP.Listen == "" {
		return DefaultHTTPListen
	}
	return c.HTTP.Listen
}

// validateHTTP checks the http section: a host:port, exactly one auth
// method with one secret source, no inline secrets, and auth whenever
// the address reaches beyond loopback.
func (c *Config) validateHTTP() []Problem {
	h := c.HTTP
	if h == nil {
		return nil
	}
	var probs []Problem
	add := func(msg string, path ...string) {
		probs = append(probs, c.problem(msg, append([]string{"http"}, path...)...))
	}
	listen := c.httpListen()
	host, port, err := net.SplitHostPort(listen)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		add(fmt.Sprintf("want host:port with a port of 1-65535, got %q", listen), "listen")
		return probs
	}
	if a := h.Auth; a != nil {
		switch {
		case a.Basic == nil && a.Bearer == nil:
			add("set basic (username, password_env or password_file) or bearer (token_env or token_file)", "auth")
		case a.Basic != nil && a.Bearer != nil:
			add("set only one of basic and bearer", "auth", "bearer")
		case a.Basic != nil:
			b := a.Basic
			if b.Password != nil {
				add("inline passwords are not allowed; use password_env (an environment variable) or password_file (a file readable only by mailbot)", "auth", "basic", "password")
			}
			if b.Username == "" || strings.ContainsAny(b.Username, ":\r\n\x00") {
				add("missing or invalid username (no colon, CR, LF or NUL)", "auth", "basic", "username")
			}
			switch {
			case b.PasswordEnv != "" && b.PasswordFile != "":
				add("set only one of password_env and password_file", "auth", "basic", "password_file")
			case b.PasswordEnv == "" && b.PasswordFile == "":
				add("set password_env or password_file", "auth", "basic")
			}
		default:
			b := a.Bearer
			if b.Token != nil {
				add("inline tokens are not allowed; use token_env (an environment variable) or token_file (a file readable only by mailbot)", "auth", "bearer", "token")
			}
			switch {
			case b.TokenEnv != "" && b.TokenFile != "":
				add("set only one of token_env and token_file", "auth", "bearer", "token_file")
			case b.TokenEnv == "" && b.TokenFile == "":
				add("set token_env or token_file", "auth", "bearer")
			}
		}
	} else if !loopbackHost(host) {
		add(fmt.Sprintf("%s is not a loopback address: the HTTP endpoint can fire triggers and delete dead letters, so listening beyond this machine needs http.auth (basic or bearer)", listen), "listen")
	}
	return probs
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkHTTPSecrets reports an http.auth secret that cannot be read now.
func (c *Config) checkHTTPSecrets(getenv func(string) (string, bool)) []Problem {
	if c.HTTP == nil || c.HTTP.Auth == nil {
		return nil
	}
	_, err := c.httpAuth(getenv)
	var se *httpSecretError
	if errors.As(err, &se) {
		return []Problem{c.problem(se.msg, se.path...)}
	}
	return nil
}

type httpSecretError struct {
	path []string
	msg  string
}

func (e *httpSecretError) Error() string {
	return fmt.Sprintf("%s: %s", strings.Join(e.path, "."), e.msg)
}

// httpAuth reads the endpoint's credentials. The zero Auth means none.
func (c *Config) httpAuth(getenv func(string) (string, bool)) (ops.Auth, error) {
	if c.HTTP == nil || c.HTTP.Auth == nil {
		return ops.Auth{}, nil
	}
	// read gets a secret from env or file; section is the key path of
	// the method, key the secret's name (password, token).
	read := func(env, file, section, key string) (string, error) {
		if env != "" {
			v, ok := getenv(env)
			if !ok || v == "" {
				return "", &httpSecretError{[]string{"http", "auth", section, key + "_env"}, fmt.Sprintf("environment variable %s is not set", env)}
			}
			return v, nil
		}
		v, err := readPasswordFile(c.Resolve(file))
		if err != nil {
			return "", &httpSecretError{[]string{"http", "auth", section, key + "_file"}, err.Error()}
		}
		return v, nil
	}
	a := c.HTTP.Auth
	switch {
	case a.Basic != nil:
		pw, err := read(a.Basic.PasswordEnv, a.Basic.PasswordFile, "basic", "password")
		if err != nil {
			return ops.Auth{}, err
		}
		return ops.Auth{Username: a.Basic.Username, Password: pw}, nil
	case a.Bearer != nil:
		tok, err := read(a.Bearer.TokenEnv, a.Bearer.TokenFile, "bearer", "token")
		if err != nil {
			return ops.Auth{}, err
		}
		return ops.Auth{Token: tok}, nil
	}
	return ops.Auth{}, errors.New("http.auth: no method set")
}
