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
	"strconv"
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

// AddMembers registers up to MaxBatch members at once, all or none.
func (c *Client) AddMembers(ctx context.Context, req AddMembersRequest) ([]Member, error) {
	var r MembersResponse
	return r.Members, c.do(ctx, http.MethodPost, "/v1/members:batch", req, &r)
}

// RemoveMembers removes up to MaxBatch members (labels or keys), all or none.
func (c *Client) RemoveMembers(ctx context.Context, refs []string) ([]Member, error) {
	var r MembersResponse
	return r.Members, c.do(ctx, http.MethodPost, "/v1/members:batchRemove", RemoveMembersRequest{Refs: refs}, &r)
}

// UpdateMember changes a member's weight, limits or disabled flag.
func (c *Client) UpdateMember(ctx context.Context, ref string, req UpdateMemberRequest) (Member, error) {
	var m Member
	return m, c.do(ctx, http.MethodPatch, "/v1/members/"+url.PathEscape(ref), req, &m)
}

// Members lists all members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	ms, _, err := c.ListMembers(ctx, ListQuery{})
	return ms, err
}

// ListMembers returns the page of members q selects and how many matched.
func (c *Client) ListMembers(ctx context.Context, q ListQuery) ([]Member, int, error) {
	var ms []Member
	path := "/v1/members"
	if v := q.Values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	h, err := c.doHeader(ctx, http.MethodGet, path, nil, &ms)
	if err != nil {
		return nil, 0, err
	}
	total, err := strconv.Atoi(h.Get(TotalHeader))
	if err != nil {
		total = len(ms)
	}
	return ms, total, nil
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
	_, err := c.doHeader(ctx, method, path, in, out)
	return err
}

func (c *Client) doHeader(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://exitd"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("control: read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return nil, &eb.Error
		}
		return nil, fmt.Errorf("control: %s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("control: bad response to %s %s: %w", method, path, err)
	}
	return resp.Header, nil
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
