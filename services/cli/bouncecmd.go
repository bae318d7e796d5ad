package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"renewals/services/bounces"
)

// refused reports whether err is the server's answer that the request was
// understood and refused (404, 409, 422): exit status 1, not 2.
func refused(err error) bool {
	se, ok := errors.AsType[*serverError](err)
	return ok && (se.status == http.StatusNotFound || se.status == http.StatusConflict || se.status == http.StatusUnprocessableEntity)
}

func resendCmd(args []string, env Env) error {
	fs := newFlagSet("resend", "resend KEY [--force --reason TEXT]\n\nSends a bounced, failed or undeliverable notice again to the subscription's contract manager, once the address has changed (or with --force and a reason, if the same address works again). KEY is <subscription_id>:<end_date>:<milestone>, as `renewals notices` lists it.", env)
	server, dataDir := clientFlags(fs, env)
	force := fs.Bool("force", false, "resend even though the contract manager's address has not changed since it bounced; needs --reason")
	reason := fs.String("reason", "", "why the resend is forced, e.g. \"mailbox restored by the customer's IT\" (kept in the ledger)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if *force && *reason == "" {
		return fmt.Errorf("--force needs --reason: say why the address works again")
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	key := fs.Arg(0)
	var res bounces.ResendResult
	err = c.do(http.MethodPost, "/api/v1/notices/"+url.PathEscape(key)+"/resend", "application/json",
		jsonBody(map[string]any{"force": *force, "reason": *reason}), &res)
	if refused(err) {
		return rejected{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "notice %s queued to go again to the contract manager; `renewals notices --subscription %s` shows when it went\n", res.NoticeKey, res.NoticeKey.SubscriptionID)
	return nil
}

func bounceCmd(args []string, env Env) error {
	fs := newFlagSet("bounce", "bounce FILE.eml\n\nFeeds one bounce that landed in a mailbox, saved with its headers as .eml, as if the bounce receiver had taken it.", env)
	server, dataDir := clientFlags(fs, env)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", fs.Arg(0), err)
	}
	defer f.Close()
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	var res bounces.Result
	err = c.do(http.MethodPost, "/api/v1/bounces", "message/rfc822", f, &res)
	if refused(err) {
		return rejected{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "notice %s: %s\n", res.Key, res.Note)
	return nil
}
