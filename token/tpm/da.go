package tpm

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DAState is the TPM's dictionary-attack state (TPM 2.0 Part 1, 19.8.6).
type DAState struct {
	FailedTries     uint32        // authorization failures counted now (TPM_PT_LOCKOUT_COUNTER)
	MaxTries        uint32        // failures that put the TPM in lockout (TPM_PT_MAX_AUTH_FAIL)
	RecoveryTime    time.Duration // one failure is forgotten per RecoveryTime (TPM_PT_LOCKOUT_INTERVAL)
	LockoutRecovery time.Duration // wait after a failed lockout-auth attempt (TPM_PT_LOCKOUT_RECOVERY)
	LockedOut       bool          // TPMA_PERMANENT.inLockout: DA-protected objects are refused
}

// DAState reads the dictionary-attack counters and whether the TPM is in lockout.
func (t *TPM) DAState() (DAState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, err := t.conn()
	if err != nil {
		return DAState{}, err
	}
	props, err := tpmProperties(tr, tpm2.TPMPTPermanent, 1)
	if err != nil {
		return DAState{}, err
	}
	more, err := tpmProperties(tr, tpm2.TPMPTLockoutCounter, 4)
	if err != nil {
		return DAState{}, err
	}
	for k, v := range more {
		props[k] = v
	}
	const inLockout = 1 << 9 // TPMA_PERMANENT bit 9
	return DAState{
		FailedTries:     props[tpm2.TPMPTLockoutCounter],
		MaxTries:        props[tpm2.TPMPTMaxAuthFail],
		RecoveryTime:    time.Duration(props[tpm2.TPMPTLockoutInterval]) * time.Second,
		LockoutRecovery: time.Duration(props[tpm2.TPMPTLockoutRecovery]) * time.Second,
		LockedOut:       props[tpm2.TPMPTPermanent]&inLockout != 0,
	}, nil
}

// tpmProperties reads count TPM properties from first on.
func tpmProperties(tr transport.TPM, first tpm2.TPMPT, count uint32) (map[tpm2.TPMPT]uint32, error) {
	out := map[tpm2.TPMPT]uint32{}
	next := first
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties,
			Property: uint32(next), PropertyCount: count}.Execute(tr)
		if err != nil {
			return nil, fmt.Errorf("tpm: read TPM properties: %w", err)
		}
		props, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, fmt.Errorf("tpm: read TPM properties: %w", err)
		}
		for _, p := range props.TPMProperty {
			if p.Property >= first && p.Property < first+tpm2.TPMPT(count) {
				out[p.Property] = p.Value
				next = p.Property + 1
			}
		}
		if !rsp.MoreData || len(props.TPMProperty) == 0 || next >= first+tpm2.TPMPT(count) {
			return out, nil
		}
	}
}

// SetDAParameters sets the dictionary-attack parameters (TPM2_DictionaryAttackParameters, with
// the lockout hierarchy's authorization empty): maxTries failures put the TPM in lockout, one
// failure is forgotten per recovery (0: failures are never forgotten, only ClearDALockout ends a
// lockout), and lockoutRecovery is the wait after a failed lockout-auth attempt (0: until the next
// reboot). Durations are rounded down to seconds.
func (t *TPM) SetDAParameters(maxTries uint32, recovery, lockoutRecovery time.Duration) error {
	if maxTries == 0 {
		return fmt.Errorf("tpm: set DA parameters: maxTries 0 would lock the TPM at once")
	}
	params := make([]byte, 12)
	binary.BigEndian.PutUint32(params[0:], maxTries)
	binary.BigEndian.PutUint32(params[4:], uint32(recovery/time.Second))
	binary.BigEndian.PutUint32(params[8:], uint32(lockoutRecovery/time.Second))
	return t.lockoutCommand("set DA parameters", tpm2.TPMCCDictionaryAttackParameters, params)
}

// ClearDALockout resets the failure counter and leaves lockout (TPM2_DictionaryAttackLockReset,
// with the lockout hierarchy's authorization empty).
func (t *TPM) ClearDALockout() error {
	return t.lockoutCommand("clear DA lockout", tpm2.TPMCCDictionaryAttackLockReset, nil)
}

// lockoutCommand runs a command whose only handle is TPM_RH_LOCKOUT, authorized with an empty
// password. go-tpm v0.9.8 does not implement the two DA commands, so they are marshalled here
// (Part 3, 25.2 and 25.3: the command header, the handle, one password session, the parameters).
func (t *TPM) lockoutCommand(what string, cc tpm2.TPMCC, params []byte) error {
	cmd := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	cmd = binary.BigEndian.AppendUint32(cmd, 0) // size, below
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(cc))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRHLockout))
	cmd = binary.BigEndian.AppendUint32(cmd, 9) // authorization area size
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRSPW))
	cmd = append(cmd, 0, 0) // nonce: empty
	cmd = append(cmd, 0)    // session attributes
	cmd = append(cmd, 0, 0) // password: empty
	cmd = append(cmd, params...)
	binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))

	t.mu.Lock()
	defer t.mu.Unlock()
	tr, err := t.conn()
	if err != nil {
		return err
	}
	rsp, err := tr.Send(cmd)
	if err != nil {
		return fmt.Errorf("tpm: %s: %w", what, err)
	}
	if len(rsp) < 10 {
		return fmt.Errorf("tpm: %s: short response (%d bytes)", what, len(rsp))
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return fmt.Errorf("tpm: %s (is the lockout authorization empty?): %w", what, authError(what, rc))
	}
	return nil
}
