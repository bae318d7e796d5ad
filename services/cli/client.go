package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// client talks to a running server's HTTP API.
type client struct {
	base  string
	token string
	http  *http.Client
	// ctx ends the requests, e.g. at SIGINT; Background unless set.
	ctx context.Context
}

// newClient reads --server and the token: RENEWALS_API_TOKEN, else the file
// the server generated under its data dir.
func newClient(server, dataDir string, getenv func(string) string) (*client, error) {
	token := getenv("RENEWALS_API_TOKEN")
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "api-token"))
		if err != nil {
			return nil, fmt.Errorf("no API token: set RENEWALS_API_TOKEN, or run from the directory where `renewals serve` keeps %s (--data-dir)", filepath.Join(dataDir, "api-token"))
		}
		token = strings.TrimSpace(string(b))
	}
	if u, err := url.Parse(server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not the URL of a server: give one such as http://127.0.0.1:8080", server)
	}
	return &client{base: strings.TrimRight(server, "/"), token: token, http: &http.Client{}, ctx: context.Background()}, nil
}

// do sends a request and decodes a JSON answer into out (when non-nil), or
// returns the server's error sentence.
func (c *client) do(method, path, contentType string, body io.Reader, out any) error {
	resp, err := c.send(method, path, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the server's answer to %s %s is not JSON (%v): is --server pointing at renewals?", method, path, err)
	}
	return nil
}

// send returns the response of a successful request; any status >= 400
// becomes an error carrying the server's message.
func (c *client) send(method, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(c.ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("bad server address %q: use e.g. http://127.0.0.1:8080", c.base)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, fmt.Errorf("cannot reach the server at %s: start it with `renewals serve`, or set --server / RENEWALS_SERVER", c.base)
		}
		if c.ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("the server at %s did not answer in HTTP (%v): is --server the address of renewals, e.g. http://127.0.0.1:8080?", c.base, err)
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, &serverError{resp.StatusCode, "the server refused the API token: set RENEWALS_API_TOKEN to its token, or --data-dir to the directory where it keeps api-token", raw}
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return nil, &serverError{resp.StatusCode, e.Error, raw}
	}
	return nil, &serverError{resp.StatusCode, fmt.Sprintf("the server answered %s", resp.Status), raw}
}

// serverError is an error answer from the API.
type serverError struct {
	status int
	msg    string
	body   []byte
}

func (e *serverError) Error() string { return e.msg }

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}
