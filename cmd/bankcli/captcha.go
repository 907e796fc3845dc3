package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/keyward/keyward/banking/bankwire"
)

// errCaptchaNeeded marks a login that needs a captcha no one could type
// here (no terminal): its image is saved; exit 4.
var errCaptchaNeeded = errorf("captcha needed")

// loginOnce seals pw to a fresh challenge and sends the login.
func loginOnce(c context.Context, b *bank, req bankwire.LoginRequest, pw []byte) (bankwire.LoginResult, error) {
	var res bankwire.LoginResult
	sealed, err := b.sealFor(c, pw)
	if err != nil {
		return res, err
	}
	req.Password = sealed
	_, err = b.call(c, "POST", "/v1/login", req, &res)
	return res, err
}

// captchaPending names the file holding the id of the captcha whose image
// a login saved beside the session.
const captchaPending = "captcha.pending"

// askCaptcha fetches a captcha, saves its image (0600) in dir, and asks
// for its digits at the terminal; without a terminal it leaves the image
// and the id for bankcli login -captcha-env and returns errCaptchaNeeded.
func askCaptcha(c context.Context, b *bank, dir string) (id, answer string, err error) {
	var cp bankwire.Captcha
	if _, err := b.call(c, "GET", "/v1/login/captcha", nil, &cp); err != nil {
		return "", "", err
	}
	img, err := base64.StdEncoding.DecodeString(cp.Image)
	if err != nil || strings.ContainsAny(cp.ID, `/\.`) || cp.ID == "" {
		return "", "", errorf("the bank's captcha is not a base64 image with an id")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, "captcha-"+cp.ID+".png")
	if err := writeNew(path, img, 0o600); err != nil {
		return "", "", err
	}
	eprintf("A captcha is needed (too many failed logins); its image is in %s\n", path)
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		if err := os.WriteFile(filepath.Join(dir, captchaPending), []byte(cp.ID+"\n"), 0o600); err != nil {
			return "", "", err
		}
		return "", "", errorf("%w: look at %s and run bankcli login again with -captcha-env NAME (the digits in NAME)", errCaptchaNeeded, path)
	}
	eprintf("Captcha (the digits in %s): ", path)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	os.Remove(path)
	if err != nil {
		return "", "", err
	}
	return cp.ID, strings.TrimSpace(line), nil
}

// savedCaptchaAnswer returns the id of the captcha a previous login saved
// in dir and the answer in the environment variable envName; the saved
// image and id are removed (a captcha is checked once).
func savedCaptchaAnswer(dir, envName string) (id, answer string, err error) {
	raw, err := os.ReadFile(filepath.Join(dir, captchaPending))
	if err != nil {
		return "", "", usageErr("no captcha is waiting in %s: run bankcli login without -captcha-env first", dir)
	}
	id = strings.TrimSpace(string(raw))
	v, ok := os.LookupEnv(envName)
	if !ok || strings.TrimSpace(v) == "" {
		return "", "", usageErr("environment variable %s is empty or unset", envName)
	}
	os.Remove(filepath.Join(dir, captchaPending))
	if !strings.ContainsAny(id, `/\.`) {
		os.Remove(filepath.Join(dir, "captcha-"+id+".png"))
	}
	return id, strings.TrimSpace(v), nil
}
