package redisstore_test

import (
	"testing"

	"renewals/pkg/storetest"
)

func TestBounceConformance(t *testing.T) {
	storetest.RunBounce(t, open)
}
