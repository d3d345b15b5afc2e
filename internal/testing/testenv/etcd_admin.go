package testenv

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// NewEtcdClient returns a plain etcd client of endpoints for test setup
// and fault injection (compaction, foreign writes), closed with the test.
// tlsCfg may be nil.
func NewEtcdClient(t testing.TB, tlsCfg *tls.Config, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("testenv: etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// EnableEtcdAuth creates the root user with password and turns
// authentication on, so that every later request needs credentials.
func EnableEtcdAuth(t testing.TB, cli *clientv3.Client, password string) {
	t.Helper()
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := cli.RoleAdd(ctx, "root"); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		t.Fatalf("testenv: RoleAdd(root) = %v", err)
	}
	if _, err := cli.UserAdd(ctx, "root", password); err != nil {
		t.Fatalf("testenv: UserAdd(root) = %v", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatalf("testenv: UserGrantRole(root) = %v", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatalf("testenv: AuthEnable = %v", err)
	}
}
