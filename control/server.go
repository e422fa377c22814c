package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"exitd/members"
)

// Backend is what the server needs from the daemon.
type Backend interface {
	// AddMember registers a member and puts it into the running device.
	AddMember(ctx context.Context, req AddMemberRequest) (Member, error)
	// RemoveMember deletes a member (label or key) from registry and device.
	RemoveMember(ctx context.Context, ref string) (Member, error)
	// Members lists members; Member finds one (label or key).
	Members(ctx context.Context) ([]Member, error)
	Member(ctx context.Context, ref string) (Member, error)
	// Status summarises the node.
	Status(ctx context.Context) (Status, error)
}

// ServerOptions configure Listen.
type ServerOptions struct {
	Path    string
	Backend Backend
	Logger  *slog.Logger
	// Allow decides whether a peer (by credentials) may use the API; nil
	// allows root and the daemon's own user only.
	Allow func(Peer) bool
	// Group, when non-negative, is the gid the socket file is chowned to.
	Group int
}

// Server serves the API until Close.
type Server struct {
	ln   net.Listener
	http *http.Server
	done chan struct{}
	path string
}

// maxBody bounds request bodies (a member add is a few hundred bytes).
const maxBody = 64 << 10

// Listen creates the socket (mode 0660, replacing a stale one) and serves it.
func Listen(opts ServerOptions) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Allow == nil {
		self := uint32(os.Geteuid())
		opts.Allow = func(p Peer) bool { return p.UID == 0 || p.UID == self }
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := removeStale(opts.Path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", opts.Path)
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", opts.Path, err)
	}
	if err := os.Chmod(opts.Path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", opts.Path, err)
	}
	if opts.Group >= 0 {
		if err := os.Chown(opts.Path, -1, opts.Group); err != nil {
			log.Warn("control socket: cannot set group", "path", opts.Path, "err", err)
		}
	}
	h := &handler{b: opts.Backend, log: log, allow: opts.Allow}
	s := &Server{ln: ln, done: make(chan struct{}), path: opts.Path}
	s.http = &http.Server{
		Handler:           h.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       peerContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go s.routineServe(log)
	return s, nil
}

func (s *Server) routineServe(log *slog.Logger) {
	defer close(s.done)
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("control: serve", "err", err)
	}
}

// Close stops serving, waits for in-flight requests up to ctx, and removes
// the socket file.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	<-s.done
	os.Remove(s.path)
	return err
}

// removeStale removes a socket file nobody answers on; a live one is an error.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control: %s is in use by a running process (is exitd already running?)", path)
	}
	return os.Remove(path)
}

type handler struct {
	b     Backend
	log   *slog.Logger
	allow func(Peer) bool
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/members", h.list)
	mux.HandleFunc("POST /v1/members", h.add)
	mux.HandleFunc("GET /v1/members/{ref}", h.get)
	mux.HandleFunc("DELETE /v1/members/{ref}", h.remove)
	return h.guard(mux)
}

func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(Peer)
		if !ok || !h.allow(p) {
			writeError(w, http.StatusForbidden, CodeForbidden, "permission denied: only root and the exitd group may use the control socket")
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/"+Version+"/") {
			writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("unknown API path %s (this node speaks %s)", r.URL.Path, Version))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	s, err := h.b.Status(r.Context())
	h.reply(w, http.StatusOK, s, err)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	ms, err := h.b.Members(r.Context())
	if ms == nil {
		ms = []Member{}
	}
	h.reply(w, http.StatusOK, ms, err)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	m, err := h.b.Member(r.Context(), r.PathValue("ref"))
	h.reply(w, http.StatusOK, m, err)
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) {
	m, err := h.b.RemoveMember(r.Context(), r.PathValue("ref"))
	h.reply(w, http.StatusOK, m, err)
}

func (h *handler) add(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeAddMember(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	m, err := h.b.AddMember(r.Context(), req)
	h.reply(w, http.StatusCreated, m, err)
}

// DecodeAddMember strictly decodes an add request: unknown fields, trailing
// data and oversized bodies are errors.
func DecodeAddMember(r io.Reader) (AddMemberRequest, error) {
	var req AddMemberRequest
	body, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return req, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxBody {
		return req, fmt.Errorf("request body larger than %d bytes", maxBody)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return AddMemberRequest{}, fmt.Errorf("bad JSON: %v", err)
	}
	if dec.More() {
		return AddMemberRequest{}, errors.New("bad JSON: trailing data after the object")
	}
	return req, nil
}

func (h *handler) reply(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		status, c := classify(err)
		if c == CodeInternal {
			h.log.Error("control: request failed", "err", err)
		}
		writeError(w, status, c, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// classify maps backend errors to HTTP status and API code.
func classify(err error) (int, string) {
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return http.StatusBadRequest, ae.Code
	case errors.Is(err, members.ErrInvalidKey):
		return http.StatusBadRequest, CodeInvalidKey
	case errors.Is(err, members.ErrInvalidLabel):
		return http.StatusBadRequest, CodeInvalidLabel
	case errors.Is(err, members.ErrDuplicate):
		return http.StatusConflict, CodeDuplicate
	case errors.Is(err, members.ErrExhausted):
		return http.StatusConflict, CodeExhausted
	case errors.Is(err, members.ErrNotFound):
		return http.StatusNotFound, CodeNotFound
	}
	return http.StatusInternalServerError, CodeInternal
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Error: APIError{Code: code, Message: msg}})
}
