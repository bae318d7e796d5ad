package e2e_test

import (
	"os"
	"testing"

	"renewals/services/e2e"
)

// TestMain removes the binary the tests built once they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	e2e.RemoveBinary()
	os.Exit(code)
}
