package main

import (
	"net/http"
	"time"
)

// apiWriteTimeout bounds the writing of one API response: a client that
// stops reading is cut off instead of holding its connection (and the
// handler's goroutine) forever. It counts from the response's first write,
// not from the request, so a request that takes long to answer (a backup
// verify) is not cut short. A variable for the tests.
var apiWriteTimeout = time.Minute

// writeDeadlines gives every response of h a write deadline of
// apiWriteTimeout: set when the request arrives (for what the server
// writes itself, such as "100 Continue") and again at the response's first
// write. http.Server's own WriteTimeout would count from the request and
// cut long handlers off.
func writeDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.SetWriteDeadline(time.Now().Add(apiWriteTimeout)) // unsupported only by test recorders
		h.ServeHTTP(&deadlineOnWrite{ResponseWriter: w, rc: rc}, r)
	})
}

// deadlineOnWrite renews the connection's write deadline at the first
// WriteHeader or Write of a response.
type deadlineOnWrite struct {
	http.ResponseWriter
	rc    *http.ResponseController
	armed bool
}

func (d *deadlineOnWrite) arm() {
	if !d.armed {
		d.armed = true
		d.rc.SetWriteDeadline(time.Now().Add(apiWriteTimeout))
	}
}

func (d *deadlineOnWrite) WriteHeader(code int) {
	d.arm()
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineOnWrite) Write(p []byte) (int, error) {
	d.arm()
	return d.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (d *deadlineOnWrite) Unwrap() http.ResponseWriter { return d.ResponseWriter }
