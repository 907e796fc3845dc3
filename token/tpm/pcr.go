package tpm

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// NumPCRs is the number of PCRs a PC-client TPM has (0..23).
const NumPCRs = 24

// normalisePCRs checks indices and returns them sorted, the order in which the TPM reports and
// hashes them.
func normalisePCRs(pcrs []int) ([]int, error) {
	out := slices.Clone(pcrs)
	slices.Sort(out)
	for i, p := range out {
		if p < 0 || p >= NumPCRs {
			return nil, fmt.Errorf("tpm: PCR index %d out of range 0..%d", p, NumPCRs-1)
		}
		if i > 0 && out[i-1] == p {
			return nil, fmt.Errorf("tpm: PCR %d listed twice", p)
		}
	}
	return out, nil
}

func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
	}}}
}

// pcrDigest is what TPM2_PolicyPCR compares: SHA-256 over the values in ascending PCR order.
func pcrDigest(values [][]byte) []byte {
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	return h.Sum(nil)
}

// ReadPCRs reads SHA-256 bank PCRs.
func (t *TPM) ReadPCRs(pcrs []int) (map[int][]byte, error) {
	sorted, err := normalisePCRs(pcrs)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, err := t.conn()
	if err != nil {
		return nil, err
	}
	values, err := readPCRs(tr, sorted)
	if err != nil {
		return nil, err
	}
	out := make(map[int][]byte, len(sorted))
	for i, p := range sorted {
		out[p] = values[i]
	}
	return out, nil
}

// readPCRs reads sorted PCR indices, in as many TPM2_PCR_Read calls as the TPM needs (it may
// return fewer PCRs than asked for; the reference implementation returns at most 8 per call).
func readPCRs(tr transport.TPM, sorted []int) ([][]byte, error) {
	got := map[int][]byte{}
	remaining := sorted
	for len(remaining) > 0 {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(remaining)}.Execute(tr)
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCRs: %w", err)
		}
		var returned []int
		for _, sel := range rsp.PCRSelectionOut.PCRSelections {
			if sel.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			for p := 0; p < len(sel.PCRSelect)*8; p++ {
				if sel.PCRSelect[p/8]&(1<<(p%8)) != 0 {
					returned = append(returned, p)
				}
			}
		}
		if len(returned) == 0 || len(returned) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("tpm: read PCRs: the TPM returned no SHA-256 values for PCR %s "+
				"(is the SHA-256 bank allocated?)", joinInts(remaining))
		}
		for i, p := range returned {
			got[p] = rsp.PCRValues.Digests[i].Buffer
		}
		remaining = slices.DeleteFunc(slices.Clone(remaining), func(p int) bool { return got[p] != nil })
	}
	out := make([][]byte, len(sorted))
	for i, p := range sorted {
		out[i] = got[p]
	}
	return out, nil
}

// ExtendPCR extends SHA-256 PCR index with SHA-256(data): PCR := SHA-256(PCR || SHA-256(data)).
// Extending a PCR that secrets are sealed to makes them unsealable until the next boot; that is
// how a boot stage "caps" a PCR after taking its secret. Tests use PCR 16 (debug) or 23;
// extending PCRs 0..15 breaks measured boot state until reboot.
func (t *TPM) ExtendPCR(index int, data []byte) error {
	if index < 0 || index >= NumPCRs {
		return fmt.Errorf("tpm: PCR index %d out of range 0..%d", index, NumPCRs-1)
	}
	d := sha256.Sum256(data)
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, err := t.conn()
	if err != nil {
		return err
	}
	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
	}.Execute(tr)
	if err != nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", index, err)
	}
	return nil
}
