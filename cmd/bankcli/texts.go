package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/text/language"

	"github.com/keyward/keyward/token/l10n"
)

// lang is the language of bankcli's prompts and messages, and of the
// bank's messages it asks for: LC_ALL, LC_MESSAGES or LANG
// (l10n.FromEnv); Chinese when none names a language.
var lang language.Tag = l10n.FromEnv(os.Getenv)

// acceptLanguage is the Accept-Language bankcli sends.
func acceptLanguage() string {
	if l10n.IsChinese(lang) {
		return "zh-CN"
	}
	return "en"
}

// tr formats the catalogue's text of key in bankcli's language.
func tr(key string, args ...any) string { return texts.Sprintf(lang, key, args...) }

// text is the catalogue's text of key, unformatted (it may hold %w).
func text(key string) string { return texts.Text(lang, key) }

// printf prints the text of key on standard output.
func printf(key string, args ...any) { fmt.Print(tr(key, args...)) }

// eprintf prints the text of key on standard error.
func eprintf(key string, args ...any) { fmt.Fprint(os.Stderr, tr(key, args...)) }

// errorf is fmt.Errorf over the text of key (which keeps its %w).
func errorf(key string, args ...any) error {
	if len(args) == 0 {
		return errors.New(text(key))
	}
	return fmt.Errorf(text(key), args...)
}

// texts is bankcli's catalogue: every prompt, message, output line,
// column header and flag help of main.go, commands.go, api.go, secret.go,
// files.go, captcha.go, staff.go and customer.go, keyed by its English
// text (TestCatalogueComplete reads those files and fails on a text
// missing here, printed without it, or kept here unused). What scripts
// read stays the same in both languages: enrol's field names (customer:,
// account:, …), ids, cursors, the bank's codes (roles, error codes) and
// the bankcli command lines printed for the reader to run next.
var texts = l10n.NewCatalog(map[string]string{
	// main.go
	"usage":                         "用法",
	"step-up still open":            "短信验证尚未完成",
	"captcha needed":                "需要图片验证码",
	"bankcli: unknown command %q\n": "bankcli：没有命令 %q\n",
	"bankcli %s: %v\n":              "bankcli %s：%v\n",
	"usage: bankcli <command> [flags]   (bankcli <command> -h for its flags; go doc ./cmd/bankcli)\n\n": "用法：bankcli <命令> [参数]   （bankcli <命令> -h 查看参数；go doc ./cmd/bankcli）\n\n",
	// command briefs (main.go)
	"enrol a customer (staff role enrol)":                                               "为客户开户（员工角色 enrol）",
	"pay cash into an account (staff role deposit)":                                     "现金存入账户（员工角色 deposit）",
	"show who a staff token is and its roles":                                           "查看员工凭证属于谁、有哪些角色",
	"lift a customer's login lock after checking identity (staff role unlock)":          "核实身份后为客户解除登录锁定（员工角色 unlock）",
	"change a customer's registered phone at the counter (staff role phone-change)":     "在柜台为客户办理预留手机号码变更（员工角色 phone-change）",
	"set an account's limits beyond the customer's ceiling (staff role limit-override)": "为账户调整限额，可超出客户自行设置的上限（员工角色 limit-override）",
	"an account's transactions, newest first, page by page":                             "查询账户交易明细，由近及远分页显示",
	"list your saved payees":                                                            "查看常用收款人",
	"save a payee (needs a recent SMS step-up)":                                         "添加常用收款人（须近期完成短信验证）",
	"remove a saved payee":                                                              "删除常用收款人",
	"list the devices the bank knows for you":                                           "查看本行为您记录的设备",
	"forget a device and end its sessions":                                              "解除信任某台设备并结束其上的会话",
	"change your anti-phishing message (needs a recent SMS step-up)":                    "修改预留防伪信息（须近期完成短信验证）",
	"log in; asks for the SMS code on a new device":                                     "登录；在新设备上会要求输入短信验证码",
	"finish the SMS step-up of the saved session":                                       "为已保存的会话完成短信验证",
	"list your accounts and balances":                                                   "查看您的账户和余额",
	"write a canonical transfer order to sign":                                          "生成待签名的规范转账指令",
	"send an order signed with your USB key":                                            "提交用 USB Key 签名的指令",
	"send an order for your cloud key; confirm it on keysvc's page":                     "提交由云密钥签名的指令；在密钥服务页面上确认",
	"save a transfer's signed receipt for openssl":                                      "保存转账的签名回单（可用 openssl 验证）",
	"end the saved session":                                                             "结束已保存的会话",
	// usage errors
	"-%s is required": "缺少 -%s",
	"the two passwords differ; nothing was sent":                                                                       "两次输入的密码不一致；未发送任何内容",
	"unexpected argument %q (every value is a -flag; secrets are never arguments)":                                     "多余的参数 %q（所有值都用 -参数 给出；机密信息绝不作为命令行参数）",
	"-url %q must be https://host:port":                                                                                "-url %q 须为 https://主机:端口",
	"-ca: %v (banking's dev mode writes var/bank/tls/ca.pem; run from the repository or pass -ca)":                     "-ca：%v（banking 的开发模式写出 var/bank/tls/ca.pem；请在代码库目录下运行，或用 -ca 指定）",
	"-ca: %s holds no PEM certificate":                                                                                 "-ca：%s 中没有 PEM 证书",
	"no session in %s: run bankcli login first":                                                                        "%s 中没有会话：请先运行 bankcli login",
	"environment variable %s is empty or unset":                                                                        "环境变量 %s 为空或未设置",
	"%s: standard input is not a terminal; type it at a terminal or name an environment variable with the -…-env flag": "%s：标准输入不是终端；请在终端中输入，或用 -…-env 参数指定环境变量",
	"-staff-token-file is required: the file holding your personal staff token (banking's dev mode writes var/bank/staff/teller1.token and supervisor1.token)": "缺少 -staff-token-file：即存放您个人员工凭证的文件（banking 的开发模式写出 var/bank/staff/teller1.token 和 supervisor1.token）",
	"the password must not be empty or contain a zero byte":                                        "密码不能为空，也不能含有零字节",
	"%s exists; bankcli never overwrites a file: pick another name or remove it":                   "%s 已存在；bankcli 从不覆盖文件：请换一个文件名或删除它",
	"-out, -sig and -key go together (the receipt body, its DER signature, the bank's public key)": "-out、-sig 和 -key 须同时给出（回单正文、其 DER 签名、本行公钥）",
	"%s: want a PEM \"PUBLIC KEY\" (openssl ec -in key.pem -pubout)":                               "%s：须为 PEM 格式的 \"PUBLIC KEY\"（openssl ec -in key.pem -pubout）",
	"%s: a USB key must be EC P-256 or SM2":                                                        "%s：USB Key 须为 EC P-256 或 SM2",
	"%v":                                                                                           "%v",
	// prompts
	"New password for %s (8-64 characters, three of: lower, upper, digits, symbols): ": "%s 的新密码（8-64 个字符，包含小写字母、大写字母、数字、符号中的至少三类）：",
	"Type it again: ":              "再输入一次：",
	"Password for %s: ":            "%s 的密码：",
	"SMS code: ":                   "短信验证码：",
	"Captcha (the digits in %s): ": "图片验证码（%s 中的数字）：",
	// outputs
	"customer: %s\nlogin:    %s\nname:     %s\naccount:  %s\nid_card:  %s\ncard:     %s\nphone:    %s\n": "customer: %s\nlogin:    %s\nname:     %s\naccount:  %s\nid_card:  %s\ncard:     %s\nphone:    %s\n",
	"usb_key:  registered in keysvc as usb-%s\n":                                                         "usb_key:  已在密钥服务中登记为 usb-%s\n",
	"cloud_key: cust-%s\nholder_setup_code: %s\n":                                                        "cloud_key: cust-%s\nholder_setup_code: %s\n",
	"\nHand the setup code to the customer: they set the cloud key's PIN with it on keysvc's\nconfirmation endpoint (dev mode: https://127.0.0.1:8444/enrol, key cust-%s). It is shown once.\n": "\n请将设置码交给客户：客户用它在密钥服务的确认页面上设置云密钥的 PIN\n（开发模式：https://127.0.0.1:8444/enrol，密钥 cust-%s）。设置码只显示这一次。\n",
	" (already booked under this idempotency key; nothing moved now)":                       "（此幂等键下已入账；本次未再动账）",
	"deposited %s %s into %s: transfer %s%s\n":                                              "已存入 %s %s 到 %s：交易 %s%s\n",
	"Your anti-phishing message: %s\n":                                                      "您的预留防伪信息：%s\n",
	"(If that is not the message you chose, this is not your bank: log out and call it.)\n": "（如果这不是您设置的信息，说明这不是您的银行：请退出并致电本行。）\n",
	"This login needs an SMS code (%s); it was sent to your registered phone.\n":            "本次登录需要短信验证码（%s）；验证码已发送到您的预留手机。\n",
	"Logged in as %s (customer %s). Session saved to %s\n":                                  "已登录为 %s（客户 %s）。会话已保存到 %s\n",
	"%w (%v)\nthe session is saved; finish with: bankcli stepup":                            "%w（%v）\n会话已保存；请用 bankcli stepup 完成验证",
	"A new SMS code was sent to your registered phone.\n":                                   "新的短信验证码已发送到您的预留手机。\n",
	"Step-up done.\n": "短信验证已完成。\n",
	"%w\nfinish the login with: bankcli stepup": "%w\n请用 bankcli stepup 完成登录",
	"ACCOUNT":                       "账号",
	"CURRENCY":                      "币种",
	"BALANCE":                       "余额",
	"STATE":                         "状态",
	"LIMITS (per transfer / daily)": "限额（单笔 / 每日）",
	"Wrote %s (%d bytes, %s). It says:\n\n    %s\n\nSHA-256: %s\n":                     "已写出 %s（%d 字节，%s）。内容：\n\n    %s\n\nSHA-256：%s\n",
	"the bank sent keysvc other bytes than %s (SHA-256 %s, not %x): do not confirm it": "银行发给密钥服务的内容与 %s 不同（SHA-256 为 %s，而不是 %x）：请勿确认",
	"Transfer %s waits for your confirmation until %s.\n":                              "转账 %s 等待您确认，截止 %s。\n",
	"Open the link keysvc sent to your device (dev mode: printed by keysvc and in var/holder-notices.jsonl),\ncheck the payee, amount and SHA-256 %s, then approve with your cloud-key PIN.\nWaiting…\n": "请打开密钥服务发送到您设备上的链接（开发模式：由 keysvc 打印，并写入 var/holder-notices.jsonl），\n核对收款人、金额和 SHA-256 %s，然后用云密钥 PIN 批准。\n等待中…\n",
	"no reason given": "未说明原因",
	"transfer %s was not confirmed: %s (%s); nothing moved":                                                                       "转账 %s 未获确认：%s（%s）；未动账",
	" (this order was executed before; nothing moved now)":                                                                        "（此指令此前已执行；本次未再动账）",
	"Transfer %s done%s.\n":                                                                                                       "转账 %s 已完成%s。\n",
	"Receipt: bankcli receipt -transfer %s -out receipt.json -sig receipt.sig -key bank-receipt.pem\n":                            "回单：bankcli receipt -transfer %s -out receipt.json -sig receipt.sig -key bank-receipt.pem\n",
	"Receipt saved and its signature checked: %s, %s, %s\nVerify it yourself: openssl dgst -sha256 -verify %s -signature %s %s\n": "回单已保存，签名已核验：%s、%s、%s\n您也可以自行验证：openssl dgst -sha256 -verify %s -signature %s %s\n",
	"Logged out.\n": "已退出登录。\n",
	"A captcha is needed (too many failed logins); its image is in %s\n":                     "登录失败次数较多，需要输入图片验证码；图片已保存在 %s\n",
	"%w: look at %s and run bankcli login again with -captcha-env NAME (the digits in NAME)": "%w：请查看 %s，然后用 -captcha-env 变量名 再次运行 bankcli login（变量中放图片上的数字）",
	"the bank's captcha is not a base64 image with an id":                                    "银行返回的图片验证码不是带编号的 base64 图片",
	"no captcha is waiting in %s: run bankcli login without -captcha-env first":              "%s 中没有待输入的图片验证码：请先不带 -captcha-env 运行 bankcli login",
	// flags (-h)
	"login name: 4-32 of a-z 0-9 _ . -, starting with a letter": "登录名：4-32 个字符（a-z、0-9、_、.、-），以字母开头",
	"the customer's name":                                                                             "客户姓名",
	"mainland mobile number; SMS codes go there":                                                      "中国大陆手机号；短信验证码发送到此号码",
	"resident ID card number (18 characters)":                                                         "居民身份证号（18 位）",
	"bank card number":                                                                                "银行卡号",
	"the customer's message, shown at every login":                                                    "客户的预留防伪信息，每次登录时显示",
	"PEM public key of the customer's USB key (EC P-256 or SM2)":                                      "客户 USB Key 的 PEM 公钥（EC P-256 或 SM2）",
	"also create a cloud signing key in keysvc (confirmed on keysvc's page)":                          "同时在密钥服务中创建云签名密钥（在密钥服务页面上确认）",
	"corporate id, for corporate operators":                                                           "企业编号（企业操作员用）",
	"corporate role: admin, maker, reviewer or authoriser":                                            "企业角色：admin（管理员）、maker（录入）、reviewer（复核）或 authoriser（授权）",
	"currency of the first account (default CNY)":                                                     "首个账户的币种（默认 CNY）",
	"file holding your personal staff token (dev: var/bank/staff/teller1.token or supervisor1.token)": "存放您个人员工凭证的文件（开发模式：var/bank/staff/teller1.token 或 supervisor1.token）",
	"what to call this device in bankcli devices, e.g. \"办公室电脑\" (optional)":                          "此设备在 bankcli devices 中显示的名称，如“办公室电脑”（可选）",
	"read the new password from this environment variable instead of the terminal":                    "从此环境变量读取新密码，而不是在终端输入",
	"account number":        "账号",
	"amount, e.g. 10000.00": "金额，例如 10000.00",
	"currency":              "币种",
	"repeat a deposit's key to make sure it is booked once (default: a new random key)": "重复使用存款的幂等键以确保只入账一次（默认：新的随机键）",
	"login name": "登录名",
	"this device's id (a new one asks for an SMS code)":                                                            "本设备的标识（新设备需要短信验证码）",
	"this device's operating system, e.g. \"Debian 12\"":                                                           "本设备的操作系统，例如 \"Debian 12\"",
	"read the password from this environment variable instead of the terminal":                                     "从此环境变量读取密码，而不是在终端输入",
	"read the SMS code from this environment variable (it must be set before the code is sent: mostly for stepup)": "从此环境变量读取短信验证码（须在验证码发出前设置：多用于 stepup）",
	"answer the captcha a previous login saved (exit 4) with the digits in this environment variable":              "用此环境变量中的数字回答上一次登录保存的图片验证码（退出码 4）",
	"read the SMS code from this environment variable instead of the terminal":                                     "从此环境变量读取短信验证码，而不是在终端输入",
	"ask for a new SMS code first":                                                                                 "先重新获取短信验证码",
	"your account":                                                                                                 "您的账户",
	"the payee's account":                                                                                          "收款账号",
	"the payee's name, as the bank knows the payee account's holder":                                               "收款人户名（与收款账户的户名一致）",
	"the payee's bank":                                                             "收款行",
	"amount, e.g. 12.00":                                                           "金额，例如 12.00",
	"remittance text (optional)":                                                   "附言（可选）",
	"the order file to write (never overwritten)":                                  "要写出的指令文件（从不覆盖）",
	"save the receipt body here (with -sig and -key)":                              "回单正文保存到此处（与 -sig、-key 一起）",
	"save the receipt's DER signature here":                                        "回单的 DER 签名保存到此处",
	"save the bank's receipt public key (PEM) here":                                "本行回单公钥（PEM）保存到此处",
	"the order file (bankcli order)":                                               "指令文件（bankcli order 生成）",
	"its signature by your USB key: DER (openssl, kwsign -out) or base64 (kwsign)": "您的 USB Key 对它的签名：DER（openssl、kwsign -out）或 base64（kwsign）",
	"the transfer id (T…)":                                                         "转账编号（T…）",
	"the bank's URL (env BANKCLI_URL)":                                             "银行的地址（环境变量 BANKCLI_URL）",
	"PEM CA of the bank's certificate (env BANKCLI_CA); empty: system roots":       "银行证书的 PEM 根证书（环境变量 BANKCLI_CA）；为空：使用系统根证书",
	"where the session is kept (0600)":                                             "会话保存的位置（0600）",
	// errors
	"%s %s: %w":                    "%s %s：%w",
	"%s %s: unexpected answer: %w": "%s %s：无法识别的应答：%w",
	"%s is readable by others (mode %v); delete it and log in again": "%s 可被他人读取（权限 %v）；请删除后重新登录",
	"%s is not a bankcli session file":                               "%s 不是 bankcli 的会话文件",
	"%s (%s, HTTP %d)":                                               "%s（%s, HTTP %d）",
	"%s (%s, HTTP %d, request id %s)":                                "%s（%s, HTTP %d, 请求编号 %s）",
	"%s is empty":                                                    "%s 为空",
	"the bank's login key is not a PEM public key":                   "银行的登录公钥不是 PEM 格式的公钥",
	"the bank's login key: %w":                                       "银行的登录公钥：%w",
	"the bank's challenge is not 32 base64url bytes":                 "银行的挑战码不是 32 字节的 base64url",
	"the receipt's signature is not base64: %w":                      "回单签名不是 base64：%w",
	"the bank's receipt key is not a PEM public key":                 "银行的回单公钥不是 PEM 格式的公钥",
	"the bank's receipt key: %w":                                     "银行的回单公钥：%w",
	"the bank's receipt key is a %T, not ECDSA":                      "银行的回单公钥是 %T，而不是 ECDSA",
	"the receipt's signature does not verify with the bank's receipt key; nothing written": "回单签名无法用银行的回单公钥验证；未写出任何文件",
	"%s holds neither a DER signature nor its base64":                                      "%s 中既不是 DER 签名，也不是其 base64",
	// staff.go
	"customer id (c…, as enrolment printed it)": "客户编号（c…，开户时打印的编号）",
	"customer id (c…)":                          "客户编号（c…）",
	"the new mainland mobile number":            "新的中国大陆手机号",
	"how you checked the customer's identity: document type and its last 4 characters, e.g. \"resident ID card ending 002X\" (never the whole number)": "您核实客户身份所用的证件：证件类型及号码后 4 位，例如“居民身份证，尾号 002X”（切勿填写完整号码）",
	"largest single transfer, e.g. 2000000.00":                          "单笔转账上限，例如 2000000.00",
	"most sent in one day (China time), e.g. 6000000.00":                "每日转出上限（按北京时间计日），例如 6000000.00",
	"why the customer needs these limits (recorded in the audit trail)": "客户需要此限额的原因（记入审计记录）",
	"id:    %s\nname:  %s\nroles: %s\n":                                 "员工号：%s\n姓名：%s\n角色：%s\n",
	"expires: %s\n":                                                     "有效期至：%s\n",
	"enrol customers":                                                   "客户开户",
	"take cash deposits":                                                "现金存入",
	"lift login locks":                                                  "解除登录锁定",
	"change registered phones":                                          "手机号码变更",
	"override limits":                                                   "限额调整",
	"verify the ledger":                                                 "账务核验",
	"unlocked %s: the lock until %s is lifted (%d failed logins cleared); the customer can log in now\n": "已为客户 %s 解除登录锁定：原锁定至 %s（已清除 %d 次登录失败记录）；客户现在即可登录\n",
	"%s was not locked (%d failed logins cleared)\n":                                                     "客户 %s 未被锁定（已清除 %d 次登录失败记录）\n",
	"phone of %s: %s → %s\nsessions ended: %d\nnotice sent to: %s\n":                                     "客户 %s 的预留手机号码已变更：%s → %s\n已结束的会话：%d 个\n变更通知已发送至：%s\n",
	"notice NOT sent to: %s (tell the customer in person)\n":                                             "变更通知未能发送至：%s（请当面告知客户）\n",
	"limits of %s: %s per transaction, %s a day\n":                                                       "账户 %s 的限额已调整：单笔 %s，每日 %s\n",
	// customer.go
	"%w\n%s needs an SMS confirmation from the last few minutes: run `bankcli stepup -resend`, enter the code, then run this command again": "%w\n%s需要最近几分钟内的短信验证：请运行 `bankcli stepup -resend`，输入验证码，然后重新运行本命令",
	"Saving a payee":                     "添加常用收款人",
	"Changing the anti-phishing message": "修改预留防伪信息",
	"transfer":                           "转账",
	"deposit":                            "现金存入",
	"withdrawal":                         "现金支取",
	"your account number":                "您的账号",
	"entries per page (1-100)":           "每页显示的笔数（1-100）",
	"the cursor a previous page printed: show the entries older than it": "上一页末尾给出的游标：显示比它更早的交易",
	"follow the pages to the account's first entry":                      "连续翻页，直到该账户的第一笔交易",
	"-limit must be 1 to 100":                                            "-limit 须为 1 到 100",
	"Account %s, newest first (times Asia/Shanghai):\n":                  "账户 %s 的交易明细，由近及远（北京时间）：\n",
	"TIME":           "时间",
	"KIND":           "类型",
	"AMOUNT":         "金额",
	"CCY":            "币种",
	"TRANSFER":       "交易编号",
	"COUNTERPARTY":   "对方户名及账号",
	"MEMO":           "附言",
	"(no entries)\n": "（没有交易记录）\n",
	"More: bankcli history -account %s -limit %d -before %s   (or -all)\n":  "更多：bankcli history -account %s -limit %d -before %s   （或加 -all 查看全部）\n",
	"(%d entries; that is the account's first)\n":                           "（共 %d 笔；已到该账户的第一笔交易）\n",
	"No saved payees. Add one with: bankcli payee-add -account … -name …\n": "没有常用收款人。添加方法：bankcli payee-add -account … -name …\n",
	"ID":       "编号",
	"NAME":     "户名",
	"NICKNAME": "备注名",
	"BANK":     "开户行",
	"SAVED":    "添加时间",
	"the payee's account number (spaces allowed)":       "收款人账号（可含空格）",
	"the account holder's name, as their bank knows it": "收款人户名（与其开户行登记的一致）",
	"the payee's bank (optional)":                       "收款人开户行（可选）",
	"your name for the payee (optional)":                "您给收款人起的备注名（可选）",
	"Saved payee %s: %s, account %s\n":                  "已添加常用收款人 %s：%s，账号 %s\n",
	"the payee's id (bankcli payees)":                   "收款人编号（见 bankcli payees）",
	"Removed payee %s.\n":                               "已删除常用收款人 %s。\n",
	"REF":                                               "编号",
	"DEVICE":                                            "设备名称",
	"OS":                                                "操作系统",
	"LAST SEEN":                                         "最近使用",
	"FIRST SEEN":                                        "首次使用",
	"LAST ADDRESS":                                      "最近 IP 地址",
	"* this device. Forget one (its sessions end): bankcli device-rm -ref REF\n":                                    "* 为本设备。解除信任某台设备（其上的会话随即结束）：bankcli device-rm -ref 编号\n",
	"the device's ref (bankcli devices)":                                                                            "设备编号（见 bankcli devices）",
	"Forgot device %s; %d session(s) on it ended. Its next login asks for an SMS code.\n":                           "已解除对设备 %s 的信任，其上 %d 个会话已结束。该设备下次登录须输入短信验证码。\n",
	"That was this device: this session has ended too; log in again.\n":                                             "这正是本设备：本会话也已结束，请重新登录。\n",
	"your new anti-phishing message: 1-20 characters, shown at every login":                                         "新的预留防伪信息：1-20 个字符，每次登录时显示",
	"Your anti-phishing message is now: %s\nEvery login shows it; if a login page does not, it is not your bank.\n": "您的预留防伪信息已改为：%s\n每次登录都会显示它；登录时若没有显示，那就不是本行。\n",
})
