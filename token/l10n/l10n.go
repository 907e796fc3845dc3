package l10n

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/text/message/catalog"
)

// The languages Keyward speaks.
var (
	Chinese = language.SimplifiedChinese
	English = language.English
	// Default is the bank's: what a reader who states no language gets.
	Default = Chinese
)

var (
	supported = []language.Tag{Chinese, English}
	matcher   = language.NewMatcher(supported)
)

// Match returns the supported language closest to the reader's
// preferences, in order; no preference, or none supported, gives Default.
func Match(prefs ...language.Tag) language.Tag {
	if len(prefs) == 0 {
		return Default
	}
	_, i, conf := matcher.Match(prefs...)
	if conf == language.No {
		return Default
	}
	return supported[i]
}

// FromAcceptLanguage returns the language for an HTTP Accept-Language
// header: "zh-CN,zh;q=0.9" → Chinese, "en-US,en;q=0.8" → English; an
// empty, malformed or unsupported header → Default.
func FromAcceptLanguage(header string) language.Tag {
	if strings.TrimSpace(header) == "" {
		return Default
	}
	prefs, _, err := language.ParseAcceptLanguage(header)
	if err != nil {
		return Default
	}
	return Match(prefs...)
}

// FromEnv returns the language a terminal's locale asks for: the first
// of LC_ALL, LC_MESSAGES and LANG that is set (POSIX order) decides.
// "zh_CN.UTF-8" → Chinese, "en_US.UTF-8" (or any other named language)
// → English; unset, "C" and "POSIX" name no language → Default. getenv
// is os.Getenv outside tests.
func FromEnv(getenv func(string) string) language.Tag {
	for _, name := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		v := getenv(name)
		if v == "" {
			continue
		}
		lang, _, _ := strings.Cut(v, ".") // zh_CN.UTF-8 → zh_CN
		lang, _, _ = strings.Cut(lang, "@")
		if lang == "C" || lang == "POSIX" || lang == "" {
			return Default
		}
		t, err := language.Parse(strings.ReplaceAll(lang, "_", "-"))
		if err != nil {
			return English
		}
		if IsChinese(t) {
			return Chinese
		}
		return English
	}
	return Default
}

// IsChinese reports whether t is a Chinese language tag (zh, zh-CN,
// zh-Hans, zh-TW, ...).
func IsChinese(t language.Tag) bool {
	base, _ := t.Base()
	return base.String() == "zh"
}

// Catalog is one package's texts: English keys, Chinese translations.
type Catalog struct {
	zh      map[string]string
	builder *catalog.Builder
}

// NewCatalog returns a catalogue with zh as the Chinese text of each
// English key. It panics on an empty key or text: catalogues are
// package variables, and a broken one is a programming error.
func NewCatalog(zh map[string]string) *Catalog {
	b := catalog.NewBuilder(catalog.Fallback(English))
	for k, v := range zh {
		if k == "" || v == "" {
			panic(fmt.Sprintf("l10n: empty catalogue entry %q → %q", k, v))
		}
		if err := b.SetString(Chinese, k, v); err != nil {
			panic(fmt.Sprintf("l10n: catalogue entry %q: %v", k, err))
		}
	}
	return &Catalog{zh: zh, builder: b}
}

// Printer returns a printer of c's texts in language t (Match'ed first).
func (c *Catalog) Printer(t language.Tag) *message.Printer {
	return message.NewPrinter(Match(t), message.Catalog(c.builder))
}

// Sprintf formats the text keyed key in language t. Arguments are
// formatted as fmt does ("%d" with no locale grouping): group amounts
// with Amount.
func (c *Catalog) Sprintf(t language.Tag, key string, args ...any) string {
	if !IsChinese(t) {
		return fmt.Sprintf(key, args...)
	}
	if zh, ok := c.zh[key]; ok {
		return fmt.Sprintf(zh, args...)
	}
	return fmt.Sprintf(key, args...)
}

// Text returns the text keyed key in language t, unformatted.
func (c *Catalog) Text(t language.Tag, key string) string {
	if IsChinese(t) {
		if zh, ok := c.zh[key]; ok {
			return zh
		}
	}
	return key
}

// Untranslated returns the keys among keys that have no Chinese text,
// sorted; a package's test asserts it is empty for every text it shows.
func (c *Catalog) Untranslated(keys ...string) []string {
	var out []string
	for _, k := range keys {
		if _, ok := c.zh[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Keys returns every key of c, sorted.
func (c *Catalog) Keys() []string {
	out := make([]string, 0, len(c.zh))
	for k := range c.zh {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
