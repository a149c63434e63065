// Package e2e holds end-to-end tests that run the real regmirror binary
// against in-process test upstreams (refpack/registrytest and
// hydrilla/hydrillatest on 127.0.0.1): crash safety (SIGKILL in the middle of
// a fill and of a sync), integrity at rest (blobs changed on disk while the
// mirror is stopped), write errors (permission denied, disk full), graceful
// shutdown, and the verify command.
//
// TestMain builds the binary once per run with `go build`; every test points
// --data at its own temporary directory and --listen at a free port on
// 127.0.0.1. Run with:
//
//	go test -race ./e2e/
package e2e
