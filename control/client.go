// The API's Go client, used by `sparsecast ctl` and the benchmarks.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Client talks to a control process's API.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// ClientError is an error answer from the API.
type ClientError struct {
	Status int
	Class  string
	Msg    string
}

func (e *ClientError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Msg, e.Class, e.Status)
}

// NewClient returns a client for an --api address (unix:/path or a
// loopback HOST:PORT); token may be empty on a Unix socket.
func NewClient(api, token string) (*Client, error) {
	network, address, err := ParseAPIAddr(api)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	base := "http://" + address
	if network == "unix" {
		base = "http://control"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", address)
		}
	}
	return &Client{base: base, token: token, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e APIError
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return &ClientError{Status: resp.StatusCode, Class: "http", Msg: fmt.Sprintf("%s %s: %s", method, path, bytes.TrimSpace(data))}
		}
		return &ClientError{Status: resp.StatusCode, Class: e.Class, Msg: e.Error}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("control API: %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Routes returns a switch's routes.
func (c *Client) Routes(ctx context.Context, sw string) (*RoutesView, error) {
	var v RoutesView
	return &v, c.do(ctx, "GET", "/v1/routes?"+url.Values{"switch": {sw}}.Encode(), nil, &v)
}

// Groups returns every group.
func (c *Client) Groups(ctx context.Context) ([]Group, error) {
	var v struct {
		Groups []Group `json:"groups"`
	}
	err := c.do(ctx, "GET", "/v1/groups", nil, &v)
	return v.Groups, err
}

// Group returns one group.
func (c *Client) Group(ctx context.Context, id uint32) (*Group, error) {
	var g Group
	return &g, c.do(ctx, "GET", fmt.Sprintf("/v1/groups/%d", id), nil, &g)
}

type membersReq struct {
	Members []uint16 `json:"members"`
}

// SetGroup creates a group or replaces its members.
func (c *Client) SetGroup(ctx context.Context, id uint32, members []uint16) (*Group, error) {
	if members == nil {
		members = []uint16{}
	}
	var g Group
	return &g, c.do(ctx, "PUT", fmt.Sprintf("/v1/groups/%d", id), membersReq{members}, &g)
}

// AddMembers adds members, creating the group if needed.
func (c *Client) AddMembers(ctx context.Context, id uint32, members []uint16) (*Group, error) {
	var g Group
	return &g, c.do(ctx, "POST", fmt.Sprintf("/v1/groups/%d/members", id), membersReq{members}, &g)
}

// RemoveMembers removes members from a group.
func (c *Client) RemoveMembers(ctx context.Context, id uint32, members []uint16) (*Group, error) {
	var g Group
	return &g, c.do(ctx, "DELETE", fmt.Sprintf("/v1/groups/%d/members", id), membersReq{members}, &g)
}

// DeleteGroup deletes a group.
func (c *Client) DeleteGroup(ctx context.Context, id uint32) error {
	return c.do(ctx, "DELETE", fmt.Sprintf("/v1/groups/%d", id), nil, nil)
}
