// Command kwsign signs a transaction file with the key on a customer's USB
// key (a removable PKCS#11 token), after showing the holder what the file
// says and getting an explicit yes.
//
//	kwsign -token <usb key> -key <key label> -in <transaction file> [-out sig.der]
//	       [-timeout 60s] [-module /path/to/pkcs11.so] [-state counter.db]
//
// kwsign must be run by a person at a terminal: standard input must be a
// terminal and standard error the same terminal, otherwise it refuses to
// start (exit 2). There is no option to answer for the holder (R-DC-1).
//
// # What the holder sees
//
// kwsign reads the file and recognises it with package txformat: an ISO
// 20022 pain.001.001.09 credit transfer (XML) or Keyward's canonical JSON
// transfer order (keyward.transfer.v1). A file that is neither, or that
// breaks any of txformat's rules, is refused with the reason and the field
// at fault, before the USB key is touched (exit 3, R-DC-2, R-DC-3).
//
// It then finds the USB key (without logging in) and shows, for example:
//
//	Transaction to sign: "pay.xml", 2559 bytes, pain.001.001.09
//
//	    2 transfers, total 6,234.50 CNY
//	    Execution requested for 2026-03-02
//	    Message: MSG-20260302-0001 (pain.001.001.09)
//	    1/2: Pay 1,234.50 CNY to 李雷 (6222 0200 1234 5678) at ICBC Beijing
//	    …
//
//	SHA-256 of the file: 589ea8cb…
//	Signing key:         "holder-sign" on USB key "alice" (serial "3f907b2e252acfea")
//
//	Sign exactly this? Type yes to sign, anything else refuses (1m0s to answer): yes
//	USB key PIN (not shown):
//	Signed 2559 bytes (SHA-256 589ea8cb…) with key "holder-sign" on USB key "alice" (serial "3f907b2e252acfea").
//	Signature (DER ECDSA) written to "pay.sig".
//
// Every line between the header and the hash is txformat's display, in
// full. Only the word yes (surrounding spaces ignored, lower case) signs;
// anything else, an empty line, end of input or Ctrl-C refuses, and
// nothing is signed (R-DC-4).
//
// # Language
//
// kwsign speaks the holder's language, read from the locale like any
// terminal program (LC_ALL, then LC_MESSAGES, then LANG; package
// token/l10n): Chinese (the bank's default) unless the locale names
// another language, then English. "LANG=zh_CN.UTF-8", "C", "POSIX" or no
// locale at all give Chinese; "LANG=en_US.UTF-8" gives English. The
// display, the question, the PIN prompt, the summary and every refusal
// follow it; flags, exit codes and the flag help do not. In Chinese the
// display is txformat's Chinese one, with every CNY amount also in Chinese
// capitals (大写金额) so the holder checks it two ways:
//
//	待签署的交易："pay.xml"，2559 字节，pain.001.001.09
//
//	    共 2 笔转账，合计 人民币 6,234.50
//	    合计大写：陆仟贰佰叁拾肆元伍角整
//	    …
//	    第 1/2 笔：向 李雷（6222 0200 1234 5678，ICBC Beijing）支付 人民币 1,234.50
//	    第 1/2 笔：大写：壹仟贰佰叁拾肆元伍角整
//	    …
//
//	确认签署以上内容吗？输入“是”（或 y）签署，其他任何输入均为拒绝（限时 1m0s）：是
//	USB 密钥 PIN（输入时不显示）：
//
// and the answers that sign are 是, y or yes (typing 是 needs an input
// method, so a Latin answer works too); anything else refuses, as in
// English. Names, banks and purposes are shown as written in the file.
// Messages that carry a library's error (a PKCS#11 return value, a file
// system error) keep that part in English. Input typed before a question appears is
// discarded, so an answer is always given to what is on the screen. The
// PIN is asked for only after the yes, typed without echo, and never read
// from argv, the environment or a file.
//
// What is signed is exactly the bytes of the file that were shown: ECDSA
// over their SHA-256, by the key on the USB key. The signature is checked
// against the key's public half before it is written.
//
// # Flags
//
//	-token    the USB key: its label, label:<label>, serial:<serial>, or an
//	          RFC 7512 URI such as pkcs11:token=alice;object=holder-sign
//	          (object= may replace -key; pin-source is refused: the PIN is
//	          always typed at the terminal). Required.
//	-key      label of the signing key (an EC key). Required unless the URI
//	          names it.
//	-in       the transaction file. Required.
//	-out      write the DER signature to this file, which must not exist
//	          (it is created with O_EXCL, never overwritten). Default: the
//	          signature goes base64-encoded to standard output.
//	-timeout  how long the holder has, from start, to answer and type the
//	          PIN. Default 60s.
//	-module   the PKCS#11 library. Default: SoftHSM2 where Debian puts it,
//	          or the URI's module-path.
//	-state    the PIN-attempt counter file (bbolt). Default
//	          $XDG_CONFIG_HOME/keyward/kwsign-pin-guard.db
//	          (~/.config/keyward/… when unset).
//
// # Exit codes
//
//	0  signed; the signature was written
//	1  failure: USB key missing or removed, key not found, not an EC key,
//	   counter file busy or unreadable, signature not written
//	2  usage: bad or missing flags, extra arguments, no terminal, -out exists
//	3  the file is not a transaction kwsign can show; nothing was asked
//	4  the holder did not answer yes (or pressed Ctrl-C, or gave no PIN)
//	5  timed out; nothing was signed
//	6  wrong PIN; the message says how many attempts are left
//	7  the USB key's PIN is locked (now, or already before the run)
//
// In every case but 0, nothing was signed and nothing written.
//
// # Timeout
//
// One clock, started when kwsign starts, covers the whole interaction
// (R-DC-4). If it runs out while the question or the PIN prompt waits,
// kwsign stops waiting at once, wipes the file's bytes and anything typed,
// puts the terminal back as it was (echo on), discards input typed but not
// yet entered (so a half-typed PIN does not reach the shell), prints
// "timed out; nothing was signed" and exits 5. The PIN must also have been
// entered before the clock runs out, or nothing is signed.
//
// # PIN and lockout
//
// The key on a USB key has CKA_ALWAYS_AUTHENTICATE, so the token wants the
// PIN for the user login and again (CKU_CONTEXT_SPECIFIC) for the
// signature. The USB key is a personal device with one PIN: kwsign asks
// once, keeps it in memory for the run only, and wipes it before exiting.
//
// Every login goes through Keyward's PIN guard (package token, R-TOK-5):
// the attempt is counted in the -state file before C_Login, reset on
// success, and after six wrong PINs in a row the key is locked for kwsign
// — across runs, even where the token itself never locks (SoftHSM2). A
// locked key is refused before anything is shown or asked, without any
// C_Login; a bank security officer unlocks it (token.Admin.Unlock). A
// module's own CKR_PIN_LOCKED or CKF_USER_PIN_LOCKED locks it too. The
// counter file is locked while kwsign runs, so two runs never count
// separately. Messages name the USB key, never the PIN.
//
// One signature per run: the token's sessions are closed at the end, and a
// session whose operation failed is closed rather than reused, so no
// operation is left half-open on the token (R-TOK-3).
//
// # Limitations
//
//   - The lockout counter lives in the holder's -state file. A real USB key
//     locks itself in hardware; with a token that does not (SoftHSM2),
//     whoever holds the key and the machine can pass a fresh -state file
//     and get six more guesses. The counter protects against mistakes and
//     casual guessing, not against the holder's own machine.
//   - The bytes and the PIN buffer are wiped, but the parsed fields are Go
//     strings, and the PKCS#11 binding passes the PIN to C_Login as a Go
//     string; neither can be wiped. They die with the process.
//   - Terminal handling (poll, termios) is written for Linux; elsewhere
//     kwsign refuses to run.
//   - The holder must read what is shown: txformat rejects invisible and
//     reordering characters, not look-alike letters (see its package
//     documentation). A file with many transfers is shown in full and may
//     scroll.
//   - Binding the signature to the bank's record of the confirmation (a
//     second channel, R-DC-1) is the server's part, not kwsign's.
package main
