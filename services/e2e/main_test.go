package e2e_test

import (
	"testing"

	"renewals/services/e2e"
)

// TestMain removes the binary the tests built once they are done.
func TestMain(m *testing.M) { e2e.Main(m) }
