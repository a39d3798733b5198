// Package apischema is the wire vocabulary that the daemon's HTTP APIs
// share with their clients: the request and response types, the error
// codes, the peer API's routes and the error body. It is defined once here so that a server and the client that
// reads its replies cannot drift apart; both sides import these names, and
// neither writes a code or a peer route as a literal.
//
// Two APIs use it:
//
//   - the API (/v1/..., internal/api): the unix socket and the TCP door
//     that the CLI and operators call;
//   - the peer API (/peer/v1/..., internal/node and internal/api's peer
//     handler): HTTPS between paired nodes, for pairing and for the
//     replicas of mirrors.
//
// Every error reply of either API is an ErrorBody, {"error": MESSAGE,
// "code": CODE}: the message is for people, the code for programs. A
// client matches the code, never the message.
//
// The codes and routes are wire values that nodes and scripts depend on:
// they must not change. A new code is added here, with a comment saying
// when it is sent; docs/API.md lists them for users.
//
// The package imports nothing of this repository but blockdev's value
// types (Range), so that every package that speaks an API (api, node,
// engine) can import it without a cycle. Types that mirror an internal
// one (BackupStats, VerifyResult, PruneStats, BitmapInfo, MirrorStatus)
// keep its fields, so that the engine converts rather than copies them,
// and the internal packages stay free of API concerns.
package apischema
