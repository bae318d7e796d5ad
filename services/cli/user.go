package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"renewals/services/console"
)

// userCmd is `renewals user add NAME --role viewer|operator`: it adds (or
// replaces) a user of the web console in the users file, with the bcrypt
// hash of a password read from the terminal without echo, or the first
// line of standard input.
func userCmd(args []string, env Env) error {
	fs := newFlagSet("user add", "user add NAME --role viewer|operator\n\nAdds a user of the web console, or changes the password and role of one, in the users file (RENEWALS_USERS_FILE, else <data dir>/users). The password is read from the terminal, or the first line of standard input.", env)
	role := fs.String("role", "viewer", "viewer (reads) or operator (also imports and erases)")
	dataDir := fs.String("data-dir", or(env.Getenv("RENEWALS_DATA_DIR"), "./data"), "the server's data dir, where the users file is unless RENEWALS_USERS_FILE says otherwise (RENEWALS_DATA_DIR)")
	file := fs.String("users-file", env.Getenv("RENEWALS_USERS_FILE"), "the users file (RENEWALS_USERS_FILE)")
	switch {
	case len(args) > 0 && args[0] == "add":
		args = args[1:]
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		// the help of its one subcommand
	default:
		return errors.New("use: renewals user add NAME --role viewer|operator (the password is read from the terminal, or the first line of standard input)")
	}
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	name := fs.Arg(0)
	if err := console.ValidName(name); err != nil {
		return err
	}
	if *role != string(console.Viewer) && *role != string(console.Operator) {
		return fmt.Errorf("role %q: use viewer or operator", *role)
	}
	password, err := readPassword(env, name)
	if err != nil {
		return err
	}
	path := usersFile(*file, *dataDir)
	if err := console.AddUser(path, name, console.Role(*role), password); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "user %s (%s) saved in %s; they can sign in to the console now\n", name, *role, path)
	return nil
}

func readPassword(env Env, name string) (string, error) {
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(env.Stderr, "Password for %s: ", name)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(env.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on standard input: type it, or pipe it in, e.g. printf '%s\\n' \"$PASSWORD\" | renewals user add NAME")
	}
	return strings.TrimRight(line, "\r\n"), nil
}
