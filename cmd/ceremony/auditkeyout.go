package main

import "fmt"

// auditOutPlan is token init's plan line for audit_public_key_out (issue 13
// friction: the ceremony-audit public key was only printed to the screen).
func auditOutPlan(path string) string {
	if path == "" {
		return "print its public key (no audit_public_key_out: copy it from the screen to pin transcripts)"
	}
	return fmt.Sprintf("print its public key and write it to %s (never overwritten), to pin transcripts with -pubkey", path)
}
