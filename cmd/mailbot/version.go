package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version returns the module version the binary was built from, or
// "devel" for a build from a working tree.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "devel"
	}
	return bi.Main.Version
}

// cmdVersion implements "mailbot version".
func (m *Main) cmdVersion(_ context.Context, args []string) int {
	fs := m.newFlagSet("version", "", "Prints mailbot's version, the Go version and the platform.")
	if status, ok := m.parseFlags(fs, args); !ok {
		return status
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(m.Stdout, "mailbot %s%s (%s %s/%s)\n", version(), rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
