// Package pgserver starts a real, throwaway Postgres server: initdb into
// a fresh temporary directory and a server that listens only on a Unix
// socket in that directory, run as a child of this process and removed
// with its data when it stops. `runner demo outbox`, the benchmarks and
// the tests (through package pgtest, which gives each test a database of
// its own) start theirs with it. It is not a way to run a production
// database: the server runs with fsync off.
//
// # Binaries
//
// The server binaries are those of Debian's postgresql package
// (/usr/lib/postgresql/VERSION/bin, the highest version found), or of the
// directory in $SLUICE_PG_BINDIR. `make postgres` (a prerequisite of
// `make test`) installs the package with apt-get when they are missing.
// Nothing here installs anything: a missing Postgres is an error saying
// so.
//
// # Running as root
//
// Postgres refuses to run as root. When this process is root (as on the
// project's machines and CI), initdb and postgres run with the uid and gid
// of the unprivileged user `postgres` (created by Debian's package), or of
// `nobody` when there is no such user: set directly on the child process
// (exec's SysProcAttr.Credential), so no su, runuser or sudo is involved.
// The temporary directory is handed to that user; root connects to its
// socket all the same.
//
// # Lifetime
//
// The server is the child of this process and gets SIGQUIT when the thread
// that started it dies (Pdeathsig), so a process killed by a timeout
// leaves no server behind; Stop shuts it down cleanly and removes its
// directory. It runs with fsync off: its data is thrown away.
package pgserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running Postgres started by Start.
type Server struct {
	// Dir is the temporary directory holding the data directory (Dir/data)
	// and the socket (in Dir itself).
	Dir string
	// Port names the socket (.s.PGSQL.<Port>); nothing listens on TCP.
	Port int

	cmd    *exec.Cmd
	exited chan struct{}
	logMu  sync.Mutex
	log    []string // the server's last lines, for errors
}

// Options configure Start. The zero value is the default.
type Options struct {
	// Settings are extra server settings (name → value), passed as -c.
	Settings map[string]string
	// Log, when set, receives the server's log lines.
	Log io.Writer
}

// BinDir returns the directory holding initdb and postgres: $SLUICE_PG_BINDIR
// when set, else the highest version under /usr/lib/postgresql.
func BinDir() (string, error) {
	if d := os.Getenv("SLUICE_PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		return "", errors.New("pgserver: no Postgres server found under /usr/lib/postgresql: run `make postgres` (installs Debian's postgresql package) or set SLUICE_PG_BINDIR")
	}
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	return filepath.Dir(dirs[0]), nil
}

// credential returns the user the server runs as when this process is
// root, and nil otherwise.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("pgserver: running as root and found neither user postgres nor nobody to run the server as")
}

// Start runs initdb into a new temporary directory and starts a server on
// it, and returns once the server accepts connections (or ctx ends).
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(fmt.Errorf("pgserver: %w", err))
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgserver: initdb: %w\n%s", err, out))
	}

	s := &Server{Dir: dir, Port: 5432, exited: make(chan struct{})}
	args := []string{"-D", data, "-k", dir, "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200"}
	keys := make([]string, 0, len(o.Settings))
	for k := range o.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+o.Settings[k])
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return fail(fmt.Errorf("pgserver: %w", err))
	}
	if err := s.cmd.Start(); err != nil {
		return fail(fmt.Errorf("pgserver: starting postgres: %w", err))
	}
	ready := make(chan struct{})
	go s.readLog(stderr, o.Log, ready)
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()

	select {
	case <-ready:
		return s, nil
	case <-s.exited:
		err := fmt.Errorf("pgserver: postgres exited at start:\n%s", s.lastLog())
		os.RemoveAll(dir)
		return nil, err
	case <-ctx.Done():
		s.Stop()
		return nil, fmt.Errorf("pgserver: postgres not ready: %w\n%s", ctx.Err(), s.lastLog())
	}
}

// readLog keeps the server's last log lines, copies them to w, and closes
// ready at the line that says the server accepts connections (logged at
// LOG level, which the default log_min_messages shows).
func (s *Server) readLog(r io.Reader, w io.Writer, ready chan<- struct{}) {
	sc := bufio.NewScanner(r)
	isReady := false
	for sc.Scan() {
		line := sc.Text()
		s.logMu.Lock()
		s.log = append(s.log, line)
		if len(s.log) > 50 {
			s.log = s.log[1:]
		}
		s.logMu.Unlock()
		if w != nil {
			fmt.Fprintln(w, line)
		}
		if !isReady && strings.Contains(line, "ready to accept connections") {
			isReady = true
			close(ready)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (s *Server) lastLog() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return strings.Join(s.log, "\n")
}

// ConnString returns a libpq-style connection string for database db
// (user postgres, no password, over the Unix socket).
func (s *Server) ConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.Dir, s.Port, db)
}

// Stop shuts the server down (fast shutdown: open sessions are ended,
// their transactions rolled back), waits for it to exit and removes its
// directory. It is safe to call more than once.
func (s *Server) Stop() error {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	return os.RemoveAll(s.Dir)
}

// dbs numbers the databases NewDB creates in this process.
var dbs atomic.Int64

// NewDB creates a new, empty database on s with a name unique in this
// process, and returns its connection string. The caller drops it
// (DropDB) or lets the server's Stop remove it.
func (s *Server) NewDB(ctx context.Context) (name, conn string, err error) {
	name = fmt.Sprintf("db_%d_%d", os.Getpid(), dbs.Add(1))
	if err := s.CreateDB(ctx, name); err != nil {
		return "", "", err
	}
	return name, s.ConnString(name), nil
}

// CreateDB creates database name.
func (s *Server) CreateDB(ctx context.Context, name string) error {
	return s.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// DropDB drops database name, ending its sessions.
func (s *Server) DropDB(ctx context.Context, name string) error {
	return s.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func (s *Server) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgserver: %s: %w", sql, err)
	}
	return nil
}
