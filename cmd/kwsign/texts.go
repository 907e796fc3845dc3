package main

import (
	"os"

	"golang.org/x/text/language"

	"github.com/keyward/keyward/token/l10n"
)

// lang is the holder's language, from the locale (l10n.FromEnv: LC_ALL,
// LC_MESSAGES, LANG): Chinese unless the locale names another language,
// then English. run sets it first; the display, the prompts and every
// refusal follow it. Flags, exit codes and the flag help stay English.
var lang language.Tag = l10n.Default

// texts are kwsign's words: English keys, Chinese texts. TestCatalogue
// finds every key in the sources and asserts each has its Chinese.
var texts = l10n.NewCatalog(map[string]string{
	// What the holder is shown and asked.
	"\nTransaction to sign: %q, %d bytes, %s\n\n":                                 "\n待签署的交易：%q，%d 字节，%s\n\n",
	"\nSHA-256 of the file: %s\n":                                                 "\n文件的 SHA-256：%s\n",
	"Signing key:         %q on USB key %q (serial %q)\n":                         "签名密钥：%[1]q，在 USB 密钥 %[2]q（序列号 %[3]q）上\n",
	"Warning: %d wrong PIN(s) in a row so far; the key locks after %d.\n":         "警告：已连续输错 %d 次 PIN；连续输错 %d 次后密钥将被锁定。\n",
	"Sign exactly this? Type yes to sign, anything else refuses (%v to answer): ": "确认签署以上内容吗？输入“是”（或 y）签署，其他任何输入均为拒绝（限时 %v）：",
	"USB key PIN (not shown): ":                                                   "USB 密钥 PIN（输入时不显示）：",
	"Signed %d bytes (SHA-256 %s) with key %q on USB key %q (serial %q).\n":       "已用 USB 密钥 %[4]q（序列号 %[5]q）上的密钥 %[3]q 签署 %[1]d 字节（SHA-256 %[2]s）。\n",
	"Signature (DER ECDSA, base64):\n":                                            "签名（DER ECDSA，base64）：\n",
	"Signature (DER ECDSA) written to %q.\n":                                      "签名（DER ECDSA）已写入 %q。\n",

	// Refusals and failures.
	"nothing was signed":           "未签署任何内容",
	"%v; %s":                       "%v；%s",
	"refused by the holder; %s":    "持有人已拒绝；%s",
	"no PIN entered; %s":           "未输入 PIN；%s",
	"no answer (end of input); %s": "没有回答（输入已结束）；%s",
	"answer too long; %s":          "回答过长；%s",
	"terminal: %v; %s":             "终端：%v；%s",
	"timed out; %s":                "已超时；%s",
	"interrupted; %s":              "已中断；%s",
	"%s: run kwsign at a terminal, a confirmation needs a person; %s":                                                 "%s：请在终端运行 kwsign，确认需要有人操作；%s",
	"standard input is not a terminal":                                                                                "标准输入不是终端",
	"standard error is not a terminal, so the holder would not see what is to be signed":                              "标准错误输出不是终端，持有人将看不到待签署的内容",
	"standard input and standard error are different terminals: the question must be shown where the answer is typed": "标准输入和标准错误输出不是同一个终端：问题必须显示在输入回答的地方",
	"kwsign's terminal handling is implemented for Linux only":                                                        "kwsign 的终端处理只支持 Linux",
	"refused %q: it is not a transaction kwsign can show (%v); %s":                                                    "拒绝 %q：这不是 kwsign 能显示的交易（%v）；%s",
	"%s already exists: kwsign never overwrites a file; %s":                                                           "%s 已存在：kwsign 从不覆盖文件；%s",
	"-out: directory %s does not exist; %s":                                                                           "-out：目录 %s 不存在；%s",
	"PIN-attempt counter: %v; %s":                                                                                     "PIN 尝试计数器：%v；%s",
	"%v (is another kwsign running?); %s":                                                                             "%v（是否有另一个 kwsign 正在运行？）；%s",
	"USB key %s not found: insert it and run kwsign again; %s":                                                        "未找到 USB 密钥 %s：请插入后重新运行 kwsign；%s",
	"USB key %s: %v; %s": "USB 密钥 %s：%v；%s",
	"token %q is not a removable device: kwsign signs with a personal USB key, not a server HSM; %s":                    "令牌 %q 不是可移动设备：kwsign 只用个人 USB 密钥签署，不用服务器 HSM；%s",
	"the PIN of USB key %q (serial %s) is locked after too many wrong PINs; a bank security officer must unlock it; %s": "USB 密钥 %q（序列号 %s）的 PIN 因输错次数过多已被锁定；须由银行安全员解锁；%s",
	"with serial %q":                                      "序列号 %q",
	"no key labelled %q on this USB key; %s":              "此 USB 密钥上没有标签为 %q 的密钥；%s",
	"key %q is %v: kwsign signs with ECDSA keys only; %s": "密钥 %q 的类型是 %v：kwsign 只用 ECDSA 密钥签署；%s",
	"the USB key's signature does not verify with its public key; nothing was written":              "USB 密钥的签名无法用其公钥验证；未写入任何内容",
	"wrong PIN, %d in a row: the USB key is now locked; a bank security officer must unlock it; %s": "PIN 错误，已连续 %d 次：USB 密钥现已锁定；须由银行安全员解锁；%s",
	"wrong PIN: %s attempt(s) left before the USB key locks; %s":                                    "PIN 错误：USB 密钥锁定前还可尝试 %s 次；%s",
	"the USB key %s was removed; %s":                                                                "USB 密钥 %s 已被拔出；%s",
	"the transaction was signed but the signature cannot be written: %v":                            "交易已签署，但签名无法写入：%v",

	// Usage refusals.
	"kwsign takes flags only (%d extra argument(s)); the PIN is asked for at the terminal, never given on the command line": "kwsign 只接受选项（多出 %d 个参数）；PIN 在终端询问，绝不在命令行给出",
	"-in is required: the transaction file to sign":                                          "必须给出 -in：要签署的交易文件",
	"-token is required: the USB key's label, serial:<serial> or a pkcs11: URI":              "必须给出 -token：USB 密钥的标签、serial:<序列号> 或 pkcs11: URI",
	"-timeout must be positive":                                                              "-timeout 必须为正数",
	"-state is required: no user configuration directory to keep the PIN-attempt counter in": "必须给出 -state：没有用户配置目录来保存 PIN 尝试计数器",
	"-token: %v": "-token：%v",
	"-token: remove pin-source from the URI: kwsign always asks for the PIN at the terminal":                      "-token：请从 URI 中去掉 pin-source：kwsign 总是在终端询问 PIN",
	"-token: kwsign finds the private key by label (object=); id= and type= other than private are not supported": "-token：kwsign 按标签（object=）查找私钥；不支持 id=，也不支持 private 以外的 type=",
	"conflicting key labels: -key %q, URI object=%q":                                                              "密钥标签冲突：-key %q，URI object=%q",
	"-key is required: the label of the signing key on the USB key":                                               "必须给出 -key：USB 密钥上签名密钥的标签",
	"no PKCS#11 library: give -module (%v)":                                                                       "没有 PKCS#11 库：请给出 -module（%v）",
})

// tf is the text keyed key in the holder's language, formatted with args.
func tf(key string, args ...any) string { return texts.Sprintf(lang, key, args...) }

// txt is the text keyed key in the holder's language, unformatted (also
// for error texts that are keys, such as the terminal checks').
func txt(key string) string { return texts.Text(lang, key) }

// ns is "nothing was signed" in the holder's language.
func ns() string { return txt(nothingSigned) }

// yes reports whether answer (spaces trimmed) signs: exactly "yes" in
// English; "是", "y" or "yes" in Chinese, where typing 是 needs an input
// method and a Latin answer must still work. Anything else refuses.
func yes(answer string) bool {
	if l10n.IsChinese(lang) {
		return answer == "是" || answer == "y" || answer == "yes"
	}
	return answer == "yes"
}

func setLang() { lang = l10n.FromEnv(os.Getenv) }
