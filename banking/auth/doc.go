// Package auth is the home of the banking app's authentication primitives
// (issue 6; R-AUTH-1..10). The sub-packages do the work; this package holds
// what they share: security events and where they go (Alerts).
package auth
