package main

import (
	"context"

	"github.com/regmirror/regmirror/cache"
)

func verifyStore(ctx context.Context, m *mirror, repair bool) ([]cache.Problem, error) {
	return cache.Verify(ctx, m.cache.Store(), repair)
}
