// Command regmirror is a caching mirror of RefPack registries and Hydrilla
// repositories. This file wires the commands; the logic lives in the packages.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/regmirror/regmirror/config"
)

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "regmirror:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	serveFlags := config.Flags()
	syncFl := syncFlags()
	verifyFl := append(config.FlagsFor(config.Verify), &cli.BoolFlag{Name: "repair", Usage: "drop entries whose blob is missing or corrupt, and unnamed blobs"})
	return &cli.App{
		Name:                 "regmirror",
		Usage:                "a caching mirror of RefPack registries and Hydrilla repositories",
		Version:              versionString(),
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			{
				Name:   "serve",
				Usage:  "run the mirror",
				Flags:  serveFlags,
				Before: config.Before(serveFlags),
				Action: serve,
			},
			{
				Name:   "sync",
				Usage:  "mirror upstreams ahead of time (what it stores is pinned)",
				Flags:  syncFl,
				Before: config.Before(syncFl),
				Action: syncCmd,
			},
			{
				Name:   "verify",
				Usage:  "check every blob against its digest and the index against the blobs",
				Flags:  verifyFl,
				Before: config.Before(verifyFl),
				Action: verifyCmd,
			},
			checkConfigCommand(),
			completionCommand(),
			{
				Name:   "version",
				Usage:  "print the version and VCS revision",
				Action: func(*cli.Context) error { fmt.Println("regmirror", versionString()); return nil },
			},
		},
	}
}
