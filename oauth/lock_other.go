//go:build !unix

package oauth

import "context"

// lockFile is a no-op where flock(2) is missing: refreshes are then
// serialised within the process only.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return func() {}, nil
}
