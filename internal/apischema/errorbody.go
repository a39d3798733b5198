package apischema

// ErrorBody is the body of every error reply of the API and of the peer
// API: {"error": "...", "code": "..."}. Both keys are always written.
type ErrorBody struct {
	Error string `json:"error"` // for people: what failed and what to do
	Code  string `json:"code"`  // for programs: one of the Code* constants
}
