package redisstore_test

import (
	"slices"
	"strings"
	"testing"

	"renewals/pkg/redisstore"
)

func TestParseSentinelURL(t *testing.T) {
	o, err := redisstore.ParseSentinelURL("redis-sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26380/mymaster?db=2")
	if err != nil {
		t.Fatal(err)
	}
	if o.MasterName != "mymaster" || o.Password != "s@cret" || o.DB != 2 ||
		!slices.Equal(o.SentinelAddrs, []string{"10.0.0.1:26379", "10.0.0.2:26380"}) || o.Protocol != 2 {
		t.Errorf("parsed %+v", o)
	}
	if o, err = redisstore.ParseSentinelURL("redis-sentinel://s1:26379/m"); err != nil || o.Password != "" || o.DB != 0 || o.MasterName != "m" {
		t.Errorf("no password, no db: %+v %v", o, err)
	}
	for raw, want := range map[string]string{
		"redis-sentinel://s1:26379":              "name the master",
		"redis-sentinel://s1/m":                  `sentinel address "s1"`,
		"redis-sentinel://u:p@s1:26379/m":        "only a password",
		"redis-sentinel://s1:26379/m?db=x":       "db=x",
		"redis-sentinel://s1:26379/m?timeout=1s": `unknown option "timeout"`,
		"redis://s1:6379/0":                      "not a redis-sentinel",
	} {
		if _, err := redisstore.ParseSentinelURL(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", raw, err, want)
		}
	}
}
