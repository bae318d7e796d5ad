package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelScheme is the scheme of a RENEWALS_REDIS_URL that names Redis
// Sentinels rather than a server:
// redis-sentinel://[:password@]host:port[,host:port...]/MASTER[?db=N].
const SentinelScheme = "redis-sentinel"

// ParseSentinelURL reads a redis-sentinel:// URL into go-redis's failover
// options: the sentinels' addresses, the master's name, the password of the
// master and its replicas (the sentinels are asked without one) and the
// database.
func ParseSentinelURL(raw string) (*redis.FailoverOptions, error) {
	rest, ok := strings.CutPrefix(raw, SentinelScheme+"://")
	if !ok {
		return nil, fmt.Errorf("not a %s:// URL", SentinelScheme)
	}
	var password string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if !hasPass {
			pass, user = user, ""
		}
		if user != "" {
			return nil, errors.New("give only a password (redis-sentinel://:password@...), not a user")
		}
		var err error
		if password, err = url.PathUnescape(pass); err != nil {
			return nil, fmt.Errorf("the password does not decode: %w", err)
		}
	}
	hosts, path, _ := strings.Cut(rest, "/")
	path, query, _ := strings.Cut(path, "?")
	opt := &redis.FailoverOptions{MasterName: path, Password: password, Protocol: 2}
	if opt.MasterName == "" {
		return nil, errors.New("name the master after the sentinels: redis-sentinel://host:26379/mymaster")
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return nil, fmt.Errorf("sentinel address %q: use host:port", h)
		}
		opt.SentinelAddrs = append(opt.SentinelAddrs, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("the query does not read: %w", err)
	}
	for k, v := range q {
		switch k {
		case "db":
			if opt.DB, err = strconv.Atoi(v[0]); err != nil || opt.DB < 0 {
				return nil, fmt.Errorf("db=%s: give a database number, 0 or more", v[0])
			}
		case "protocol":
			if opt.Protocol, err = strconv.Atoi(v[0]); err != nil || (opt.Protocol != 2 && opt.Protocol != 3) {
				return nil, fmt.Errorf("protocol=%s: give 2 or 3", v[0])
			}
		default:
			return nil, fmt.Errorf("unknown option %q: a redis-sentinel URL takes db and protocol", k)
		}
	}
	return opt, nil
}

// newClient opens the client RENEWALS_REDIS_URL names, and says where it
// points for messages. replicated reports that writes should wait for a
// replica: through Sentinel always.
func newClient(raw string) (c *redis.Client, where string, replicated bool, err error) {
	if strings.HasPrefix(raw, SentinelScheme+"://") {
		opt, err := ParseSentinelURL(raw)
		if err != nil {
			return nil, "", false, fmt.Errorf("open redis store: RENEWALS_REDIS_URL: %w", err)
		}
		return redis.NewFailoverClient(opt), "master " + opt.MasterName + " of sentinels " + strings.Join(opt.SentinelAddrs, ","), true, nil
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, "", false, fmt.Errorf("open redis store: RENEWALS_REDIS_URL is not a Redis URL (use redis://host:6379/0, or %s://host:26379/mymaster): %w", SentinelScheme, err)
	}
	if opt.Protocol == 0 {
		// RESP2 unless the URL asks (protocol=3). Under RESP3 the client
		// peeks at the socket for push notifications before every command,
		// a system call each; the stores use neither push notifications nor
		// client-side caching.
		opt.Protocol = 2
	}
	return redis.NewClient(opt), opt.Addr, false, nil
}

// hasReplicas reports whether the server c talks to has replicas connected.
func hasReplicas(ctx context.Context, c *redis.Client) bool {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, err := strconv.Atoi(v)
			return err == nil && n > 0
		}
	}
	return false
}

// ReplicaWait bounds how long a confirm waits for a replica (WAIT 1).
const ReplicaWait = time.Second
