package api

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"renewals/pkg/mailer"
)

// eraseOutbox deletes the subscription's emails from the outbox: they hold
// the contract manager's name and address. It runs whatever the store
// answered, so that erasing an id again (or one the store no longer knows)
// also clears what an earlier erasure left behind.
func (s *Server) eraseOutbox(id string) error {
	if s.OutboxDir == "" {
		return nil
	}
	n, err := mailer.EraseFromOutbox(s.OutboxDir, id)
	// The reps' morning lists (morning-*.eml) name contract managers of
	// many subscriptions: any erasure removes every one kept here.
	lists, _ := filepath.Glob(filepath.Join(s.OutboxDir, "morning-*.eml"))
	for _, f := range lists {
		if rerr := os.Remove(f); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	if n > 0 {
		s.Log.Info("emails erased from the outbox", zap.String("subscription_id", id), zap.Int("files", n))
	}
	if err != nil {
		return fmt.Errorf("%w: the subscription's emails are still in the outbox; fix the permissions and erase it again", err)
	}
	return nil
}
