package api

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// keyNamePattern is the grammar of key names; names appear in URLs,
// metrics labels and audit records, so they are kept plain.
var keyNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validKeyName(name string) error {
	if !keyNamePattern.MatchString(name) {
		return invalidArgument("key name must match ^[a-z0-9][a-z0-9._-]{0,63}$")
	}
	return nil
}

// positiveInt parses a decimal version number: 1, 2, … (at most 2^31-1).
func positiveInt(what, s string) (int, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil || v < 1 || strings.HasPrefix(s, "+") {
		return 0, invalidArgument(fmt.Sprintf("%s must be a positive integer", what))
	}
	return int(v), nil
}
