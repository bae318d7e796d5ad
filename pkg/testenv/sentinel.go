package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name StartRedisSentinel's sentinels watch.
const SentinelMaster = "renewals"

// RedisSentinel is a Redis primary, its replica and three Redis Sentinels
// (quorum two) on free loopback ports, all started from Debian's
// redis-server and redis-sentinel. The sentinels call the primary down
// after a second without answer and promote the replica.
type RedisSentinel struct {
	Primary, Replica *Redis
	sentinels        []*exec.Cmd
	addrs            []string
}

// StartRedisSentinel starts the primary, the replica and the sentinels and
// returns once the sentinels know the replica. All are killed at test end.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	sentinelPath, err := exec.LookPath("redis-sentinel")
	if err != nil {
		t.Fatal("redis-sentinel is not installed: apt-get install -y redis-sentinel")
	}
	rs := &RedisSentinel{Primary: StartRedis(t), Replica: StartRedis(t)}
	rc := rs.Replica.Client(t)
	ctx := context.Background()
	if err := rc.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(rs.Primary.port)).Err(); err != nil {
		t.Fatalf("make %s a replica of %s: %v", rs.Replica.Addr, rs.Primary.Addr, err)
	}
	Eventually(t, 20*time.Second, "the replica in sync with the primary", func() bool {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	for i := range 3 {
		dir := t.TempDir()
		port := FreePort(t)
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, filepath.Join(dir, "sentinel.log"),
			SentinelMaster, rs.Primary.port, SentinelMaster, SentinelMaster, SentinelMaster)
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sentinelPath, path)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-sentinel %d: %v", i, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		rs.sentinels = append(rs.sentinels, cmd)
		rs.addrs = append(rs.addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	for _, a := range rs.addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a})
		t.Cleanup(func() { sc.Close() })
		Eventually(t, 30*time.Second, "sentinel "+a+" to know the replica and the other sentinels", func() bool {
			reps, err := sc.Replicas(ctx, SentinelMaster).Result()
			if err != nil || len(reps) == 0 {
				return false
			}
			others, err := sc.Sentinels(ctx, SentinelMaster).Result()
			return err == nil && len(others) == 2
		})
	}
	return rs
}

// URL is RENEWALS_REDIS_URL for the sentinels.
func (rs *RedisSentinel) URL() string {
	return "redis-sentinel://" + strings.Join(rs.addrs, ",") + "/" + SentinelMaster
}

// Master asks the first sentinel that answers which address is the master.
func (rs *RedisSentinel) Master(t testing.TB) string {
	t.Helper()
	for _, a := range rs.addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a})
		addr, err := sc.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
		sc.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1])
		}
	}
	t.Fatal("no sentinel names a master")
	return ""
}
