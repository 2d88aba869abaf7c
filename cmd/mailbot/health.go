package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

const healthDesc = `Asks a running "mailbot run" whether it serves: GETs its /healthz and exits
0 on 200 OK, 1 otherwise (not running, no answer within --timeout, any
other status). For container HEALTHCHECKs and monitoring that cannot run
curl (the container image has none).

The URL is --url, else $MAILBOT_HEALTH_URL, else http://<http.listen>/healthz
from the config file (-c, default $MAILBOT_CONFIG, else mailbot.yaml), with
a wildcard listen address (0.0.0.0, ::) asked on loopback.`

// envHealthURL overrides the URL "mailbot health" asks.
const envHealthURL = "MAILBOT_HEALTH_URL"

// cmdHealth implements "mailbot health".
func (m *Main) cmdHealth(ctx context.Context, args []string) int {
	fs := m.newFlagSet("health", "[-c mailbot.yaml] [--url URL] [--timeout 5s]", healthDesc)
	cfgFlag := fs.String("c", "", "config file whose http.listen to ask (default $"+envConfig+", else mailbot.yaml)")
	urlFlag := fs.String("url", "", "the health URL (default $"+envHealthURL+", else http://<http.listen>/healthz)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return m.usageError(fs, "unexpected argument %q", pos[0])
	}
	url := *urlFlag
	if url == "" {
		if v, ok := m.lookupEnv(envHealthURL); ok && v != "" {
			url = v
		}
	}
	if url == "" {
		u, err := healthURLFromConfig(m.configPath(*cfgFlag, "mailbot.yaml"))
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot health: %v\n", err)
			return exitFailure
		}
		url = u
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot health: %v\n", err)
		return exitFailure
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot health: %s: %v\n", url, err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(m.Stderr, "mailbot health: %s: %s %s\n", url, resp.Status, strings.TrimSpace(string(body)))
		return exitFailure
	}
	fmt.Fprintf(m.Stdout, "%s: %s\n", url, resp.Status)
	return exitOK
}

// healthURLFromConfig builds the /healthz URL from the config's
// http.listen. Only that key is read, leniently: a health check must not
// fail on a config the daemon accepts.
func healthURLFromConfig(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no --url and no readable config: %w", err)
	}
	var doc struct {
		HTTP struct {
			Listen string `yaml:"listen"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	listen := doc.HTTP.Listen
	if listen == "" {
		return "", fmt.Errorf("%s: http.listen is not set, so the daemon serves no /healthz (set it, or give --url)", path)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%s: http.listen %q: %w", path, listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
