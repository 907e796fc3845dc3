// Package softhsmtests holds Keyward's integration tests against SoftHSM2, a
// real PKCS#11 module. Every run works on throwaway tokens: TestMain writes a
// temporary SOFTHSM2_CONF and token directory, and each test creates its own
// token through the PKCS#11 API (C_InitToken, C_InitPIN).
//
// Without SoftHSM2 the tests skip with a message naming the package to
// install (apt-get install softhsm2); under CI=true a missing SoftHSM2 is a
// failure. Set KEYWARD_PKCS11_MODULE to test another module path.
//
// Some tests re-run the test binary as a child process: a fresh process is
// how a restart is proven (the PIN lockout survives it), and the USB-key
// tests need SoftHSM's slots.removable = true, which is read at C_Initialize.
package softhsmtests
