package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/mailbot/mailbot/luabind"
)

// LimitsConfig bounds what one script run may use.
type LimitsConfig struct {
	// Memory is the most memory one run's Lua values may take, as a size
	// ("512MiB", "1GiB", "256MB", a number of bytes), or "0"/"off" for no
	// limit. Empty means the default, 512 MiB.
	Memory string `yaml:"memory"`
}

// minMemoryLimit is the smallest memory limit accepted: a script's state
// with the toolbox loaded already takes a few hundred KiB.
const minMemoryLimit = 1 << 20

// sizeUnits are the units ParseSize accepts, lowercased.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20,
	"gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// ParseSize parses a size such as "512MiB", "1.5 GiB", "256MB" or
// "1048576" into bytes. KB, MB, GB and TB are powers of 1000; KiB, MiB,
// GiB and TiB powers of 1024. Units are case-insensitive.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	f, err := strconv.ParseFloat(num, 64)
	mult, ok := sizeUnits[unit]
	if num == "" || err != nil || !ok {
		return 0, fmt.Errorf("%q is not a size like \"512MiB\", \"1GiB\" or \"256MB\"", s)
	}
	n := f * mult
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// memoryLimit returns limits.memory for luabind.Options.MemoryLimit: the
// default when unset, -1 when disabled. The value must have passed
// validateLimits.
func (c *Config) memoryLimit() int64 {
	m := strings.TrimSpace(c.Limits.Memory)
	if m == "" {
		return luabind.DefaultMemoryLimit
	}
	if strings.EqualFold(m, "off") {
		return -1
	}
	n, err := ParseSize(m)
	if err != nil {
		return luabind.DefaultMemoryLimit
	}
	if n == 0 {
		return -1
	}
	return n
}

// validateLimits checks the limits section.
func (c *Config) validateLimits() []Problem {
	m := strings.TrimSpace(c.Limits.Memory)
	if m == "" || strings.EqualFold(m, "off") {
		return nil
	}
	n, err := ParseSize(m)
	switch {
	case err != nil:
		return []Problem{c.problem(err.Error()+`, or "off"`, "limits", "memory")}
	case n != 0 && n < minMemoryLimit:
		return []Problem{c.problem(fmt.Sprintf("%q is below the minimum of 1MiB (use \"off\" for no limit)", m), "limits", "memory")}
	}
	return nil
}
