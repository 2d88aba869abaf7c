package main

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailbot/mailbot/luabind"
)

// HTTPClientConfig is the http_client section: what the scripts' http
// module may reach and its defaults. (The http section is the daemon's
// own operations endpoint.)
//
//	http_client:
//	  allow_hosts: [api.example.com, "*.corp.example", "metrics.internal:8443"]
//	  ca_file: /etc/mailbot/corp-ca.pem
//	  max_bytes: 32MiB
//	  timeout: 30s
type HTTPClientConfig struct {
	// AllowHosts, when present, are the only hosts scripts' requests and
	// their redirects may go to: a name, "*.domain" (names below domain),
	// an IP address, any of them with ":port". Absent: any host. An empty
	// list denies every request.
	AllowHosts []string `yaml:"allow_hosts"`
	// CAFile is a PEM bundle that replaces the system roots for requests
	// without their own ca_file; relative to the config file.
	CAFile string `yaml:"ca_file"`
	// MaxBytes is the default response body limit, a size like "32MiB";
	// empty: 32 MiB. It never exceeds limits.memory.
	MaxBytes string `yaml:"max_bytes"`
	// Timeout is the default per-request timeout; 0: 30s. run_timeout
	// bounds every request too.
	Timeout time.Duration `yaml:"timeout"`
}

func init() {
	configTypes["main.HTTPClientConfig"] = reflect.TypeFor[HTTPClientConfig]()
}

// validateHTTPClient checks the http_client section: host patterns, a
// readable PEM ca_file, a positive size and timeout.
func (c *Config) validateHTTPClient() []Problem {
	h := c.HTTPClient
	if h == nil {
		return nil
	}
	var probs []Problem
	for i, p := range h.AllowHosts {
		if err := luabind.CheckHostPattern(p); err != nil {
			probs = append(probs, Problem{File: c.path, Line: c.itemLine(i, "http_client", "allow_hosts"),
				Key: "http_client.allow_hosts." + strconv.Itoa(i), Msg: err.Error()})
		}
	}
	if h.CAFile != "" {
		if _, err := c.httpClientRoots(); err != nil {
			probs = append(probs, c.problem(err.Error(), "http_client", "ca_file"))
		}
	}
	if h.MaxBytes != "" {
		if n, err := ParseSize(h.MaxBytes); err != nil {
			probs = append(probs, c.problem(err.Error(), "http_client", "max_bytes"))
		} else if n <= 0 {
			probs = append(probs, c.problem("must be more than 0 bytes", "http_client", "max_bytes"))
		}
	}
	if h.Timeout < 0 {
		probs = append(probs, c.problem("must be a positive duration (or absent for 30s)", "http_client", "timeout"))
	}
	return probs
}

// httpClientRoots reads http_client.ca_file.
func (c *Config) httpClientRoots() (*x509.CertPool, error) {
	f := c.HTTPClient.CAFile
	pem, err := os.ReadFile(c.Resolve(f))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", f, unwrapPathError(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", f)
	}
	return pool, nil
}

// itemLine returns the line of the i-th entry of the list at path, or
// the list's own line when it cannot be found.
func (c *Config) itemLine(i int, path ...string) int {
	n := c.root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			return lineOf(c.root, path...)
		}
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == key {
				next = n.Content[j+1]
			}
		}
		n = next
	}
	if n == nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
		return lineOf(c.root, path...)
	}
	return n.Content[i].Line
}

// applyHTTPClient sets o.HTTP from the http_client section. Call it after
// Validate; a ca_file that cannot be read any more (a reload raced its
// removal) trusts no certificate rather than falling back to the system
// roots.
func (c *Config) applyHTTPClient(o *luabind.Options) {
	o.HTTP = luabind.HTTPOptions{UserAgent: "mailbot/" + version()}
	if c.HTTP != nil && c.HTTP.Auth == nil {
		// Without auth the operations endpoint trusts whoever reaches
		// it on loopback; scripts are not meant to fire triggers or
		// delete dead letters through it.
		if _, port, err := net.SplitHostPort(c.httpListen()); err == nil {
			if n, err := strconv.Atoi(port); err == nil && n > 0 {
				o.HTTP.DenyLoopbackPorts = []int{n}
				o.HTTP.DenyLoopbackSource = "mailbot's own HTTP endpoint (http.listen, config line " + strconv.Itoa(lineOf(c.root, "http")) + ")"
			}
		}
	}
	h := c.HTTPClient
	if h == nil {
		return
	}
	if h.AllowHosts != nil {
		o.HTTP.AllowHosts = append(make([]string, 0, len(h.AllowHosts)), h.AllowHosts...)
		o.HTTP.AllowHostsSource = "http_client.allow_hosts (config line " + strconv.Itoa(lineOf(c.root, "http_client", "allow_hosts")) + ")"
	}
	if h.CAFile != "" {
		pool, err := c.httpClientRoots()
		if err != nil {
			pool = x509.NewCertPool()
		}
		o.HTTP.RootCAs = pool
	}
	if s := strings.TrimSpace(h.MaxBytes); s != "" {
		if n, err := ParseSize(s); err == nil && n > 0 {
			o.HTTP.MaxBytes, o.HTTP.MaxBytesSource = n, "http_client.max_bytes"
		}
	}
	o.HTTP.Timeout = h.Timeout
}
