package testenv

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSCluster is n nats-servers with JetStream clustered on loopback in this
// process, as nats-server's own tests run them: each on fixed client and
// route ports with a store directory of its own, so that a stopped server
// starts again as itself.
type NATSCluster struct {
	t    testing.TB
	mu   sync.Mutex
	opts []*server.Options
	srvs []*server.Server
}

// StartNATSCluster starts n clustered servers named n1, n2, ... and waits
// until JetStream's meta leader counts all n as peers it can place streams
// on. They are shut down at test end.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t, opts: make([]*server.Options, n), srvs: make([]*server.Server, n)}
	routePorts := make([]int, n)
	for i := range n {
		routePorts[i] = FreePort(t)
	}
	base := t.TempDir()
	for i := range n {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
			}
		}
		c.opts[i] = &server.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       FreePort(t),
			JetStream:  true,
			StoreDir:   filepath.Join(base, "n"+strconv.Itoa(i+1)),
			Cluster: server.ClusterOpts{
				Name: "renewals-test", Host: "127.0.0.1", Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs: true,
			NoLog:  true,
		}
	}
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range n {
			c.Stop(i)
		}
	})
	c.WaitPeers(t)
	return c
}

// WaitPeers waits until the JetStream meta leader counts every server as a
// current peer.
func (c *NATSCluster) WaitPeers(t testing.TB) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("a JetStream meta leader with %d current peers", len(c.opts)), func() bool {
		for _, s := range c.running() {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(c.opts) {
				return true
			}
		}
		return false
	})
}

// URLs returns the client URLs of every server, comma-separated, as
// RENEWALS_NATS_URL takes them.
func (c *NATSCluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// Index returns the index of the server named name, or -1.
func (c *NATSCluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// Name returns the name of server i.
func (c *NATSCluster) Name(i int) string { return c.opts[i].ServerName }

// Stop shuts server i down (a no-op when it is not running).
func (c *NATSCluster) Stop(i int) {
	c.mu.Lock()
	s := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Start starts server i, again as itself after Stop.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatalf("start nats-server %s: %v", o.ServerName, err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		c.t.Fatalf("nats-server %s not ready within 20s", o.ServerName)
	}
	c.mu.Lock()
	c.srvs[i] = s
	c.mu.Unlock()
}

// Server returns server i, nil when stopped.
func (c *NATSCluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srvs[i]
}

func (c *NATSCluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.srvs {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}
