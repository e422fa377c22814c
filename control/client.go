package control

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
	"syscall"
)

// Client talks to a node's control socket.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{path: path, http: &http.Client{Transport: tr}}
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// AddMember registers a member.
func (c *Client) AddMember(ctx context.Context, req AddMemberRequest) (Member, error) {
	var m Member
	return m, c.do(ctx, http.MethodPost, "/v1/members", req, &m)
}

// Members lists all members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	return ms, c.do(ctx, http.MethodGet, "/v1/members", nil, &ms)
}

// Member fetches one member by label or key.
func (c *Client) Member(ctx context.Context, ref string) (Member, error) {
	var m Member
	return m, c.do(ctx, http.MethodGet, "/v1/members/"+url.PathEscape(ref), nil, &m)
}

// RemoveMember deletes a member by label or key.
func (c *Client) RemoveMember(ctx context.Context, ref string) (Member, error) {
	var m Member
	return m, c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(ref), nil, &m)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://exitd"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control: read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &eb.Error
		}
		return fmt.Errorf("control: %s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("control: bad response to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("no control socket at %s: is exitd running? (set --socket or EXITCTL_SOCKET)", c.path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("exitd is not answering on %s (stale socket?)", c.path)
	case errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("permission denied on %s: run as root or as a member of the exitd group", c.path)
	}
	return fmt.Errorf("control: %w", err)
}
