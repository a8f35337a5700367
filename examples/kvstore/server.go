package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/latchd/latch/replica"
)

// group is the one Paxos group the example uses.
const group = 1

// maxValue bounds a value's size.
const maxValue = 64 << 10

// server serves the HTTP client API of one replica:
//
//	PUT    /kv/{key}   body = value      → 200 "OK"
//	GET    /kv/{key}                     → 200 value, 404 if absent
//	GET    /kv/{key}?stale=1             → the local value, no leader needed
//	DELETE /kv/{key}                     → 200 "deleted", 404 if absent
//	GET    /status                       → JSON replica.Status (+ Role as text)
//
// Writes and linearizable reads go to the leader; any other replica answers
// 307 Temporary Redirect to the leader's HTTP address (curl -L follows it).
type server struct {
	r       *replica.Replica
	store   *Store
	clients map[uint64]string // replica id → HTTP address, for redirects
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kv/{key}", s.get)
	mux.HandleFunc("PUT /kv/{key}", s.put)
	mux.HandleFunc("DELETE /kv/{key}", s.del)
	mux.HandleFunc("GET /status", s.status)
	return mux
}

func (s *server) get(w http.ResponseWriter, req *http.Request) {
	key := req.PathValue("key")
	if req.URL.Query().Get("stale") == "" {
		if err := s.r.ReadBarrier(req.Context(), group); err != nil {
			s.fail(w, req, err)
			return
		}
	}
	v, ok := s.store.Get(key)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Write(v)
}

func (s *server) put(w http.ResponseWriter, req *http.Request) {
	value, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxValue))
	if err != nil {
		http.Error(w, "value too large or unreadable: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	res, err := s.r.Propose(req.Context(), group, putCmd(req.PathValue("key"), value))
	if err != nil {
		s.fail(w, req, err)
		return
	}
	s.result(w, res)
}

func (s *server) del(w http.ResponseWriter, req *http.Request) {
	res, err := s.r.Propose(req.Context(), group, deleteCmd(req.PathValue("key")))
	if err != nil {
		s.fail(w, req, err)
		return
	}
	switch string(res) {
	case "1":
		w.Write([]byte("deleted\n"))
	case "0":
		http.Error(w, "not found", http.StatusNotFound)
	default:
		s.result(w, res)
	}
}

func (s *server) result(w http.ResponseWriter, res []byte) {
	if msg, ok := strings.CutPrefix(string(res), "ERR "); ok {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	w.Write(append(res, '\n'))
}

func (s *server) status(w http.ResponseWriter, req *http.Request) {
	st, err := s.r.Status(req.Context(), group)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Role string
		replica.Status
	}{st.Role.String(), st})
}

// fail maps a replica error to HTTP: a redirect to the leader, or 503.
func (s *server) fail(w http.ResponseWriter, req *http.Request, err error) {
	var nl *replica.NotLeaderError
	if errors.As(err, &nl) {
		if addr := s.clients[nl.Leader]; nl.Leader != 0 && addr != "" {
			u := *req.URL
			u.Scheme, u.Host = "http", addr
			http.Redirect(w, req, u.String(), http.StatusTemporaryRedirect)
			return
		}
		http.Error(w, "no leader yet; retry", http.StatusServiceUnavailable)
		return
	}
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}
