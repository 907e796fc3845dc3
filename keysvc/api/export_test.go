package api

import "github.com/keyward/keyward/token/l10n"

// ErrorTableCodes lists the error table's sentinels and codes for tests.
func ErrorTableCodes() map[error]string {
	m := make(map[error]string, len(errorTable))
	for _, r := range errorTable {
		m[r.Err] = r.Code
	}
	return m
}

// PageTexts is the confirmation pages' catalogue.
func PageTexts() *l10n.Catalog { return pageTexts }
