package main

import (
	"context"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/proxy"
)

func verifyStore(ctx context.Context, m *proxy.Mirror, repair bool) ([]cache.Problem, error) {
	return cache.Verify(ctx, m.Cache.Store(), repair)
}
