package main

import (
	"runtime/debug"
)

// versionString is the module version and VCS revision the binary was built from.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// userAgent is sent on every upstream request.
func userAgent() string {
	bi, ok := debug.ReadBuildInfo()
	if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return "regmirror/" + bi.Main.Version
	}
	return "regmirror/devel"
}
