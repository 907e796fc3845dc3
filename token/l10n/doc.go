// Package l10n is what Keyward shows differently by reader: the language
// (Simplified Chinese first, English too), message catalogues, the time
// in China beside UTC, and amounts with grouping and in Chinese capitals.
//
// Keyward is deployed by a Chinese bank: pages, API messages and prompts
// are Chinese unless the reader asks for English (Accept-Language on
// HTTP, LANG/LC_ALL/LC_MESSAGES at a terminal). Codes a program reads
// (error codes, JSON names, exit codes) never change with the language.
//
// # Catalogues
//
// Each package keeps its own catalogue of the texts it shows, keyed by
// the English text (golang.org/x/text/message's convention): English
// needs no entry, Chinese has one per key.
//
//	var texts = l10n.NewCatalog(map[string]string{
//		"Confirm this transaction": "确认此笔交易",
//		"%d attempts left":         "还可尝试 %d 次",
//	})
//	texts.Sprintf(tag, "%d attempts left", 3) // "还可尝试 3 次" for l10n.Chinese
//
// A package's test calls Catalog.Untranslated with every key it uses, so
// a text added in English only fails the build's tests, not a customer.
//
// # Times and amounts
//
// Time shows an instant in China time (Asia/Shanghai, UTC+8, no summer
// time since 1991) with UTC beside it, for a reader in China and an
// operator reading UTC logs. Amount groups the integer part in threes
// ("12,345.67") and names the currency the reader's way (人民币 / CNY);
// AmountInWords writes a yuan amount in Chinese capitals (大写金额,
// "壹万贰仟叁佰肆拾伍元陆角柒分"), as a Chinese bank's forms and
// confirmation screens show beside the figures so a holder can check the
// amount was not altered.
//
// The package is a leaf (only golang.org/x/text below it), under token/
// like pinsource and txformat, so keysvc's pages, banking, bankcli and
// kwsign all use it without reaching each other.
package l10n
