package etcdlocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// RestoreOptions configure RestoreSnapshot.
type RestoreOptions struct {
	Options
	// Util is etcdutl (default: UtilBinary(".")).
	Util string
}

// RestoreSnapshot starts a NEW local cluster from an etcd snapshot (one
// written by etcdstore's Backup, or `etcdctl snapshot save`), the way
// etcd's disaster-recovery guide restores one: `etcdutl snapshot restore`
// once per member, each into its own data directory with the new
// cluster's name, peer URL, --initial-cluster and token, then every member
// started on its restored directory. etcdutl checks the snapshot's
// SHA-256 trailer first and refuses a damaged file. The restored cluster
// has the snapshot's keyspace and a new identity (cluster and member ids),
// so it never joins the cluster the snapshot came from; its TLS files are
// new too (a new CA under Dir/tls). It returns when every member is
// healthy, as Start does.
func RestoreSnapshot(ctx context.Context, snapshot string, opts RestoreOptions) (*Cluster, error) {
	if opts.Members == 0 {
		opts.Members = 3
	}
	if opts.Dir == "" {
		return nil, errors.New("etcdlocal: Options.Dir is required")
	}
	snap, err := filepath.Abs(snapshot)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(snap); err != nil {
		return nil, fmt.Errorf("etcdlocal: snapshot: %w", err)
	}
	bin, util := opts.Binary, opts.Util
	if bin == "" {
		if bin, err = Binary("."); err != nil {
			return nil, err
		}
	}
	if util == "" {
		if util, err = UtilBinary("."); err != nil {
			return nil, err
		}
	}
	return startWith(ctx, opts.Options, bin, func(c *Cluster) error {
		for _, m := range c.Members {
			if err := os.RemoveAll(m.dir); err != nil { // etcdutl refuses an existing directory
				return err
			}
			cmd := exec.CommandContext(ctx, util, "snapshot", "restore", snap,
				"--name", m.Name, "--data-dir", m.dir,
				"--initial-cluster", c.initialCluster(), "--initial-cluster-token", "keyward-restored",
				"--initial-advertise-peer-urls", m.PeerURL)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("etcdlocal: etcdutl snapshot restore %s for %s: %v: %s", snapshot, m.Name, err, out)
			}
		}
		return nil
	})
}
