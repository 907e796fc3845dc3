package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// TPM is an open TPM 2.0. It is safe for concurrent use: one mutex serialises every command
// sequence (a TPM executes one command at a time anyway).
type TPM struct {
	spec string

	mu      sync.Mutex
	tr      transport.TPMCloser // nil once closed
	signers map[*Signer]struct{}
}

// Open opens a TPM.
//
//	/dev/tpmrm0, device:/dev/tpmrm0   the kernel's TPM device (production; use the resource
//	                                  manager device tpmrm0, not tpm0)
//	tcp:HOST:PORT                     a simulator speaking the TPM simulator TCP protocol, e.g.
//	                                  swtpm socket --tpm2 --server type=tcp,port=PORT
//	                                  --ctrl type=tcp,port=PORT+1 --flags not-need-init,startup-clear
//
// Open sends one command to check that a TPM 2.0 answers. A simulator has no resource manager, so
// on tcp: Open also flushes transient objects and sessions left by an earlier client that died.
func Open(spec string) (*TPM, error) {
	tr, err := openTransport(spec)
	if err != nil {
		return nil, err
	}
	t := &TPM{spec: spec, tr: tr, signers: map[*Signer]struct{}{}}
	if err := t.probe(); err != nil {
		tr.Close()
		return nil, fmt.Errorf("%w: %s answers, but not as a working TPM 2.0: %w", ErrNoTPM, spec, err)
	}
	if strings.HasPrefix(spec, "tcp:") {
		t.flushTransient()
	}
	return t, nil
}

func openTransport(spec string) (transport.TPMCloser, error) {
	switch {
	case strings.HasPrefix(spec, "tcp:"):
		addr := strings.TrimPrefix(spec, "tcp:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: TPM spec %q: want tcp:HOST:PORT", ErrNoTPM, spec)
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v; is the simulator running? (swtpm socket --tpm2 "+
				"--server type=tcp,port=PORT --ctrl type=tcp,port=PORT+1 --flags not-need-init,startup-clear)",
				ErrNoTPM, spec, err)
		}
		return &simConn{c: c.(*net.TCPConn)}, nil
	case strings.HasPrefix(spec, "device:"), strings.HasPrefix(spec, "/"):
		path := strings.TrimPrefix(spec, "device:")
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("%w: TPM spec %q: want device:/dev/tpmrm0", ErrNoTPM, spec)
		}
		tr, err := linuxtpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v; is %s present (firmware TPM enabled, tpm_crb or tpm_tis "+
				"loaded) and readable by this user (group tss)?", ErrNoTPM, err, path)
		}
		return tr, nil
	}
	return nil, fmt.Errorf("%w: TPM spec %q: want /dev/tpmrm0, device:/dev/tpmrm0 or tcp:HOST:PORT", ErrNoTPM, spec)
}

// Close closes the TPM, flushing the keys of Signers still open.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return nil
	}
	for s := range t.signers {
		s.flushLocked()
	}
	err := t.tr.Close()
	t.tr = nil
	return err
}

// String returns the spec the TPM was opened with.
func (t *TPM) String() string { return t.spec }

// conn returns the transport; the caller holds t.mu.
func (t *TPM) conn() (transport.TPM, error) {
	if t.tr == nil {
		return nil, ErrClosed
	}
	return sendErrors{t.tr, t.spec}, nil
}

// connSRK is conn plus the storage root key, re-derived for this command
// sequence; the caller holds t.mu and flushes srk.handle.
func (t *TPM) connSRK() (transport.TPM, *srk, error) {
	tr, err := t.conn()
	if err != nil {
		return nil, nil, err
	}
	srk, err := createSRK(tr)
	if err != nil {
		return nil, nil, err
	}
	return tr, srk, nil
}

// probe checks that a TPM 2.0 answers; a simulator that was never started up gets
// TPM2_Startup(CLEAR).
func (t *TPM) probe() error {
	tr, _ := t.conn()
	cmd := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties,
		Property: uint32(tpm2.TPMPTFamilyIndicator), PropertyCount: 1}
	_, err := cmd.Execute(tr)
	if errors.Is(err, tpm2.TPMRCInitialize) {
		if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(tr); err != nil {
			return err
		}
		_, err = cmd.Execute(tr)
	}
	return err
}

// flushTransient flushes loaded objects and sessions (best effort).
func (t *TPM) flushTransient() {
	tr, _ := t.conn()
	for _, first := range []tpm2.TPMHandle{0x80000000, 0x02000000, 0x03000000} { // transient, HMAC, policy
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first),
			PropertyCount: 64}.Execute(tr)
		if err != nil {
			continue
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			continue
		}
		for _, h := range hs.Handle {
			if h>>24 != first>>24 {
				continue
			}
			_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tr)
		}
	}
}

// flush flushes a transient handle, best effort: the caller holds t.mu.
func (t *TPM) flush(h tpm2.TPMHandle) {
	if tr, err := t.conn(); err == nil {
		_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tr)
	}
}

// sendErrors marks transport failures (not TPM response codes) with ErrNoTPM.
type sendErrors struct {
	tr   transport.TPM
	spec string
}

// Send also resends a command the TPM did not start (TPM_RC_RETRY, TPM_RC_YIELDED,
// TPM_RC_TESTING), as tpm2-tss does: the TPM has not consumed it, so the same bytes, session
// nonces included, are valid again. (swtpm answers TPM_RC_RETRY once to the first TPM2_Unseal of
// a DA-protected object after start-up.)
func (s sendErrors) Send(cmd []byte) ([]byte, error) {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		rsp, err := s.tr.Send(cmd)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoTPM, s.spec, err)
		}
		if len(rsp) < 10 || attempt == sendRetries {
			return rsp, nil
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			time.Sleep(delay)
			delay = min(2*delay, 500*time.Millisecond)
			continue
		}
		return rsp, nil
	}
}

// sendRetries bounds resends: about 5 s in all.
const sendRetries = 15

// simConn speaks the TPM simulator TCP protocol (the reference implementation's TpmTcpProtocol.h,
// which swtpm implements) on the command port. It is used instead of go-tpm's transport/tcp
// because that one reads the response with a single Read (a short TCP read fails the command) and
// also dials the platform port, whose protocol swtpm does not share; this one reads with
// io.ReadFull, bounds every command with a deadline, and never touches the control port.
type simConn struct {
	c *net.TCPConn
}

const (
	simSendCommand  = 8
	simSessionEnd   = 20
	simMaxResponse  = 1 << 20
	simCommandLimit = 2 * time.Minute // key generation on slow TPMs takes seconds, not minutes
)

func (s *simConn) Send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(time.Now().Add(simCommandLimit)); err != nil {
		return nil, err
	}
	req := make([]byte, 9, 9+len(cmd))
	binary.BigEndian.PutUint32(req[0:], simSendCommand)
	req[4] = 0 // locality
	binary.BigEndian.PutUint32(req[5:], uint32(len(cmd)))
	if _, err := s.c.Write(append(req, cmd...)); err != nil {
		return nil, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(s.c, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > simMaxResponse {
		return nil, fmt.Errorf("simulator response length %d", n)
	}
	rsp := make([]byte, n+4) // response, then the simulator's own 4-byte status
	if _, err := io.ReadFull(s.c, rsp); err != nil {
		return nil, err
	}
	return rsp[:n], nil
}

func (s *simConn) Close() error {
	_ = s.c.SetDeadline(time.Now().Add(time.Second))
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], simSessionEnd)
	_, _ = s.c.Write(end[:]) // polite goodbye; swtpm then serves the next client
	return s.c.Close()
}
