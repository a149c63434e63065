// Package refpack holds what regmirror must know about the RefPack dataset-package
// registry (see shared/docs/refpack.md): request paths and ids, SemVer versions and
// the "latest" rule, the .refpack.zip layout and its safety limits, the registry's
// error bodies and the list/search semantics the mirror needs when it answers a list
// itself. It does no HTTP serving and no storage.
package refpack
