package control

import (
	"bytes"
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"exitd/members"
)

// Backend is what the server needs from the daemon. Every change it
// acknowledges is durable and in the running device.
type Backend interface {
	// AddMembers registers members and puts the enabled ones into the
	// running device, all or none; with configs, each answer carries the
	// member's client config.
	AddMembers(ctx context.Context, req AddMembersRequest) ([]Member, error)
	// RemoveMembers deletes members (labels or keys) from registry and
	// device, all or none.
	RemoveMembers(ctx context.Context, refs []string) ([]Member, error)
	// UpdateMember changes a member's policy (weight, limits, disabled) in
	// registry, scheduler and device.
	UpdateMember(ctx context.Context, ref string, req UpdateMemberRequest) (Member, error)
	// Members lists members as q selects, with the number that matched;
	// Member finds one (label or key).
	Members(ctx context.Context, q ListQuery) ([]Member, int, error)
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

// maxBody bounds request bodies (a member add is a few hundred bytes);
// maxBatchBody bounds batch requests (MaxBatch members of ~250 bytes).
const (
	maxBody      = 64 << 10
	maxBatchBody = 8 << 20
)

// TotalHeader carries the number of members a list query matched (the body
// is one page of them).
const TotalHeader = "X-Total-Count"

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
	if opts.Group >= 0 && !hasGroup(opts.Path, opts.Group) {
		// Under systemd the socket directory already carries the group and
		// chown is filtered (~@privileged): only chown when needed.
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
	mux.HandleFunc("POST /v1/members:batch", h.addBatch)
	mux.HandleFunc("POST /v1/members:batchRemove", h.removeBatch)
	mux.HandleFunc("GET /v1/members/{ref}", h.get)
	mux.HandleFunc("PATCH /v1/members/{ref}", h.update)
	mux.HandleFunc("DELETE /v1/members/{ref}", h.remove)
	h.metricsRoutes(mux) // metrics_api.go
	mux.HandleFunc("GET /v1/cluster", h.cluster)
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
	q, err := ParseListQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	ms, total, err := h.b.Members(r.Context(), q)
	if ms == nil {
		ms = []Member{}
	}
	if err == nil {
		w.Header().Set(TotalHeader, strconv.Itoa(total))
	}
	h.reply(w, http.StatusOK, ms, err)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	m, err := h.b.Member(r.Context(), r.PathValue("ref"))
	h.reply(w, http.StatusOK, m, err)
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) {
	ms, err := h.b.RemoveMembers(r.Context(), []string{r.PathValue("ref")})
	h.reply(w, http.StatusOK, first(ms), err)
}

func (h *handler) add(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeAddMember(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	ms, err := h.b.AddMembers(r.Context(), AddMembersRequest{Members: []AddMemberRequest{req}, Configs: true})
	h.reply(w, http.StatusCreated, first(ms), err)
}

func (h *handler) addBatch(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeAddMembers(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	ms, err := h.b.AddMembers(r.Context(), req)
	h.reply(w, http.StatusCreated, MembersResponse{Members: ms}, err)
}

func (h *handler) removeBatch(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeRemoveMembers(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	ms, err := h.b.RemoveMembers(r.Context(), req.Refs)
	h.reply(w, http.StatusOK, MembersResponse{Members: ms}, err)
}

func (h *handler) update(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeUpdateMember(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	m, err := h.b.UpdateMember(r.Context(), r.PathValue("ref"), req)
	h.reply(w, http.StatusOK, m, err)
}

// first is the single answer of a one-element batch.
func first(ms []Member) Member {
	if len(ms) == 0 {
		return Member{}
	}
	return ms[0]
}

// DecodeAddMember strictly decodes an add request: unknown fields, trailing
// data and oversized bodies are errors.
func DecodeAddMember(r io.Reader) (AddMemberRequest, error) {
	var req AddMemberRequest
	if err := decodeStrict(r, maxBody, &req); err != nil {
		return AddMemberRequest{}, err
	}
	return req, nil
}

// DecodeAddMembers strictly decodes a batch add of 1..MaxBatch members.
func DecodeAddMembers(r io.Reader) (AddMembersRequest, error) {
	var req AddMembersRequest
	if err := decodeStrict(r, maxBatchBody, &req); err != nil {
		return AddMembersRequest{}, err
	}
	if len(req.Members) == 0 || len(req.Members) > MaxBatch {
		return AddMembersRequest{}, fmt.Errorf("batch of %d members: want 1-%d", len(req.Members), MaxBatch)
	}
	return req, nil
}

// DecodeRemoveMembers strictly decodes a batch removal of 1..MaxBatch refs.
func DecodeRemoveMembers(r io.Reader) (RemoveMembersRequest, error) {
	var req RemoveMembersRequest
	if err := decodeStrict(r, maxBatchBody, &req); err != nil {
		return RemoveMembersRequest{}, err
	}
	if len(req.Refs) == 0 || len(req.Refs) > MaxBatch {
		return RemoveMembersRequest{}, fmt.Errorf("batch of %d refs: want 1-%d", len(req.Refs), MaxBatch)
	}
	return req, nil
}

// DecodeUpdateMember strictly decodes a member update that changes at least
// one field.
func DecodeUpdateMember(r io.Reader) (UpdateMemberRequest, error) {
	var req UpdateMemberRequest
	if err := decodeStrict(r, maxBody, &req); err != nil {
		return UpdateMemberRequest{}, err
	}
	if req == (UpdateMemberRequest{}) {
		return UpdateMemberRequest{}, errors.New("nothing to change: give weight, egress_limit, ingress_limit, max_conns or disabled")
	}
	return req, nil
}

// decodeStrict decodes one JSON object of at most limit bytes into v.
func decodeStrict(r io.Reader, limit int, v any) error {
	body, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(body) > limit {
		return fmt.Errorf("request body larger than %d bytes", limit)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("bad JSON: trailing data after the object")
	}
	return nil
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
	case errors.Is(err, members.ErrInvalidPolicy):
		return http.StatusBadRequest, CodeInvalidRequest
	case errors.Is(err, ErrConflict), errors.Is(err, members.ErrConflict):
		return http.StatusConflict, CodeConflict
	case errors.Is(err, members.ErrStoreUnavailable):
		return http.StatusServiceUnavailable, CodeUnavailable
	}
	return http.StatusInternalServerError, CodeInternal
}

// ErrConflict is a backend error for a request that contradicts the
// member's state (e.g. a change the device refused); it maps to "conflict".
var ErrConflict = errors.New("conflict")

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Error: APIError{Code: code, Message: msg}})
}

// hasGroup reports whether path already belongs to gid.
func hasGroup(path string, gid int) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Gid) == gid
}
