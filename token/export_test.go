package token

import (
	"context"
	"log/slog"
)

// LaterForTest is a lazy member opened by open (a memtoken in unit tests),
// without a PKCS#11 module: LazyStore's logic, minus the module.
func LaterForTest(label, serial string, open func(context.Context) (Member, error), log *slog.Logger) Member {
	return &lazyMember{label: label, serial: serial, open: open, log: log}
}
