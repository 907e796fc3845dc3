// Package blacklist screens account numbers and names against the bank's
// fraud and terror list (R-SRV-6): blacklisted accounts cannot be opened
// and cannot receive transfers. The list is a text file an operator
// replaces; a Watcher notices and swaps the new list in without a restart.
//
// # File format
//
// UTF-8 text (a leading byte-order mark and CRLF line ends are accepted),
// one entry per line, surrounding spaces ignored:
//
//		# Fraud list 2026-11-28, case refs in the case system
//		account:6222 0210 0112 3456 789
//		account:GB29NWBK60161331926819
//		name:张三
//		name:ZHANG San
//		end:4
//
//	  - blank lines and lines starting with # are ignored;
//	  - account:<number> — 6 to 34 letters and digits; spaces and hyphens
//	    inside are ignored, letters compared in upper case (NormaliseAccount);
//	  - name:<name> — up to 256 characters, compared after NormaliseName;
//	  - end:<count> — required, the last entry line, where count is the
//	    number of account and name lines above it (duplicates included).
//
// The end line is how a half-written file is told from a short list: a
// file without it, with a wrong count, or with entries after it, is
// refused. Anything else that does not fit is refused too, naming the line
// (*ParseError, errors.Is ErrMalformed). Nothing is ever half loaded.
// Writing the new file elsewhere and renaming it over the old one is still
// the better habit.
//
// # Names
//
// NormaliseName folds what a person would not see as a different name:
// NFKC (full-width Ｊｏｈｎ is John, the ideographic space is a space),
// Unicode case folding, invisible characters (zero-width space, joiners,
// soft hyphen, variation selectors) removed, middle-dot variants of
// transliterated names made one, white space collapsed. Chinese names are
// then compared exactly.
//
// # Reloading
//
// Open loads the file and fails if it is missing or malformed: the bank
// must not start unscreened. A goroutine then looks every
// Options.Interval (default 10 s): when the file's modification time or
// size changed (or its time is too recent to trust, see racyWindow), it
// reads the file, and when the SHA-256 of the content changed, parses it
// and atomically swaps the new list in. A file that has gone, cannot be
// read or is malformed leaves the previous list in force and is reported
// once through Options.OnError. Reload does the same on demand (an
// operator's "reload now").
//
// # Concurrency
//
// A List is immutable; the Watcher holds the one in force behind an
// atomic pointer, so CheckAccount and CheckName never lock or wait for a
// reload, and each check sees one whole list.
//
// # Limitations
//
//   - Exact matching after normalisation: no fuzzy matching, no
//     transliteration (Zhang San does not match 张三), no simplified ↔
//     traditional Chinese, no reordering of family and given names. List
//     every spelling that matters, or put a real screening engine behind
//     the same CheckName signature.
//   - Polling, not file-system events: a change takes up to one interval
//     to take effect.
//   - The whole list is held in memory (two Go maps).
package blacklist
