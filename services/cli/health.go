package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// healthCmd is `renewals health`: it exits 0 when the server answers
// /readyz with 200 (its NATS and store are reachable), else 2 with one
// sentence, so that a container whose image has no shell can be checked.
func healthCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("health", "health [--server URL] [--timeout DURATION]\n\n"+
		"Exits 0 when the server answers /readyz (its NATS and store are reachable), else 2\n"+
		"with the reason. For container health checks: HEALTHCHECK CMD [\"renewals\", \"health\"].", env)
	server := fs.String("server", healthServer(env.Getenv),
		"server address (RENEWALS_SERVER; else RENEWALS_HTTP_ADDR, where a server with this environment listens; else http://127.0.0.1:8080)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	base := strings.TrimRight(*server, "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q is not the URL of a server: give one such as http://127.0.0.1:8080", *server)
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout %v: give a positive duration, e.g. 5s", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("--server %q is not the URL of a server: give one such as http://127.0.0.1:8080", *server)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var op *net.OpError
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("the server at %s did not answer /readyz within %v: it is stuck or overloaded", base, *timeout)
		case errors.As(err, &op):
			return fmt.Errorf("cannot reach the server at %s: start it with `renewals serve`, or set --server / RENEWALS_SERVER", base)
		default:
			return fmt.Errorf("the server at %s gave no HTTP answer to /readyz: is --server pointing at renewals?", base)
		}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		fmt.Fprintf(env.Stdout, "ready: %s\n", base)
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("the server at %s is %s", base, e.Error)
	}
	return fmt.Errorf("the server at %s answered /readyz with %s: is --server pointing at renewals?", base, resp.Status)
}

// healthServer is the default --server of health: RENEWALS_SERVER, else
// the server that RENEWALS_HTTP_ADDR makes listen (a wildcard host is
// reached on the loopback address), else http://127.0.0.1:8080.
func healthServer(getenv func(string) string) string {
	if s := getenv("RENEWALS_SERVER"); s != "" {
		return s
	}
	host, port, err := net.SplitHostPort(getenv("RENEWALS_HTTP_ADDR"))
	if err != nil || port == "" || port == "0" {
		return "http://127.0.0.1:8080"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
