package ops

import "net/http"

// The status page plugs into the Server: its routes (GET /, POST /ui/...)
// run behind the server's authentication, with the server's CSRF tokens.
func init() {
	pageRoutes = func(s *Server, mux *http.ServeMux) {
		mux.Handle("/", PageHandler(s.Backend(), PageOptions{CSRFToken: s.CSRFToken, Logger: s.log}))
	}
}
