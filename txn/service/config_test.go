package service

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn"
	"github.com/stretchr/testify/require"
)

// testApp has one app flag, --input, and builds nothing.
var testApp = App{
	Name: "orders-app",
	Flags: func(fs *flag.FlagSet) func(string) (*stream.Topology, error) {
		fs.String("input", "orders", "source topic")
		return func(string) (*stream.Topology, error) { return nil, errors.New("not built in these tests") }
	},
}

// writeFile writes a config file into a fresh directory and returns its
// path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// Each setting, the worker's and the app's, takes the command line's
// value over the environment's, the environment's over the file's, the
// file's over the default.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "brokers: file:9092\ninput: file-in\nguarantee: at_most_once\ncommit-interval: 3s\nlog-level: debug\n"+
		"max-batch-records: 700\nreplication-factor: 3\nlanes: 2\n")
	timeouts := writeFile(t, "session-timeout: 30s\ntransaction-timeout: 1m\n")
	lanes := strconv.Itoa(min(runtime.GOMAXPROCS(0), 8))
	tests := []struct {
		name string
		args []string
		env  []string
		want map[string]string // flag => value
		from map[string]string // flag => source; absent: default
	}{
		{
			name: "defaults",
			want: map[string]string{"brokers": "127.0.0.1:9092", "input": "orders", "guarantee": "exactly_once",
				"commit-interval": "100ms", "log-level": "info", "app-id": "orders-app", "state-dir": filepath.Join("state", "orders-app", "w1"),
				"state-flush-writes": "100000", "max-batch-records": "20000", "lanes": lanes, "session-timeout": "10s",
				"transaction-timeout": "10s", "replication-factor": "-1"},
			from: map[string]string{"instance": "flag", "lanes": "", "transaction-timeout": "", "replication-factor": ""},
		},
		{
			name: "file over default",
			args: []string{"--config", file},
			want: map[string]string{"brokers": "file:9092", "input": "file-in", "guarantee": "at_most_once", "commit-interval": "3s",
				"log-level": "debug", "session-timeout": "10s", "max-batch-records": "700", "replication-factor": "3", "lanes": "2"},
			from: map[string]string{"brokers": file, "input": file, "session-timeout": "", "max-batch-records": file,
				"replication-factor": file, "lanes": file},
		},
		{
			name: "env over file",
			args: []string{"--config", file},
			env: []string{"SLUICE_BROKERS=env:9092", "SLUICE_INPUT=env-in", "SLUICE_GUARANTEE=at_least_once",
				"SLUICE_MAX_BATCH_RECORDS=800", "SLUICE_STATE_FLUSH_WRITES=5000", "SLUICE_TRANSACTION_TIMEOUT=45s"},
			want: map[string]string{"brokers": "env:9092", "input": "env-in", "guarantee": "at_least_once", "commit-interval": "3s",
				"max-batch-records": "800", "state-flush-writes": "5000", "transaction-timeout": "45s", "replication-factor": "3"},
			from: map[string]string{"brokers": "SLUICE_BROKERS", "input": "SLUICE_INPUT", "commit-interval": file,
				"max-batch-records": "SLUICE_MAX_BATCH_RECORDS", "state-flush-writes": "SLUICE_STATE_FLUSH_WRITES",
				"transaction-timeout": "SLUICE_TRANSACTION_TIMEOUT", "replication-factor": file},
		},
		{
			name: "flag over env over file",
			args: []string{"--config", file, "--brokers", "flag:9092", "--input=flag-in", "--max-batch-records", "900",
				"--replication-factor=1", "--state-flush-writes", "10"},
			env: []string{"SLUICE_BROKERS=env:9092", "SLUICE_INPUT=env-in", "SLUICE_COMMIT_INTERVAL=2s",
				"SLUICE_REPLICATION_FACTOR=2", "SLUICE_MAX_BATCH_RECORDS=800", "SLUICE_LANES=3"},
			want: map[string]string{"brokers": "flag:9092", "input": "flag-in", "commit-interval": "2s", "guarantee": "at_most_once",
				"max-batch-records": "900", "replication-factor": "1", "state-flush-writes": "10", "lanes": "3"},
			from: map[string]string{"brokers": "flag", "input": "flag", "commit-interval": "SLUICE_COMMIT_INTERVAL", "guarantee": file,
				"max-batch-records": "flag", "replication-factor": "flag", "state-flush-writes": "flag", "lanes": "SLUICE_LANES"},
		},
		{
			name: "file named by the environment",
			env:  []string{"SLUICE_CONFIG=" + file},
			want: map[string]string{"brokers": "file:9092", "config": file},
			from: map[string]string{"brokers": file, "config": "SLUICE_CONFIG"},
		},
		{
			name: "flag names another file than the environment",
			args: []string{"--config", writeFile(t, "brokers: other:9092\n")},
			env:  []string{"SLUICE_CONFIG=" + file},
			want: map[string]string{"brokers": "other:9092", "input": "orders"},
		},
		{
			name: "transaction timeout follows the session timeout",
			env:  []string{"SLUICE_SESSION_TIMEOUT=30s"},
			want: map[string]string{"session-timeout": "30s", "transaction-timeout": "30s"},
			from: map[string]string{"session-timeout": "SLUICE_SESSION_TIMEOUT", "transaction-timeout": ""},
		},
		{
			name: "transaction timeout set apart",
			args: []string{"--config", timeouts},
			want: map[string]string{"session-timeout": "30s", "transaction-timeout": "1m0s"},
			from: map[string]string{"session-timeout": timeouts, "transaction-timeout": timeouts},
		},
		{
			name: "transaction timeout's flag over the file",
			args: []string{"--config", timeouts, "--transaction-timeout", "2m"},
			want: map[string]string{"session-timeout": "30s", "transaction-timeout": "2m0s"},
			from: map[string]string{"session-timeout": timeouts, "transaction-timeout": "flag"},
		},
		{
			name: "app id derives the state dir",
			env:  []string{"SLUICE_APP_ID=orders-v2"},
			want: map[string]string{"app-id": "orders-v2", "state-dir": filepath.Join("state", "orders-v2", "w1")},
			from: map[string]string{"state-dir": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(testApp, append([]string{"--instance", "w1"}, tt.args...), tt.env)
			require.NoError(t, err)
			for name, want := range tt.want {
				require.Equal(t, want, p.fs.Lookup(name).Value.String(), name)
			}
			for name, want := range tt.from {
				require.Equal(t, want, p.from[name], "where %s came from", name)
			}
		})
	}
}

// The typed settings reach the worker's fields: txn.Config's, each set
// to a value other than its default, and the logger's.
func TestParsedFields(t *testing.T) {
	p, err := parse(testApp, []string{"--instance", "w1", "--brokers", "a:1,b:2", "--state-dir", "/s", "--guarantee", "at_least_once",
		"--state-flush-writes", "500", "--commit-interval", "200ms", "--max-batch-records", "300", "--lanes", "5",
		"--session-timeout", "3s", "--transaction-timeout", "4s", "--replication-factor", "3", "--advertise-addr", "w1.example:9100",
		"--log-level", "warn", "--log-format", "json"}, nil)
	require.NoError(t, err)
	require.Equal(t, txn.Config{
		Brokers: []string{"a:1", "b:2"}, Instance: "w1", StateDir: "/s", StateFlushWrites: 500, Guarantee: txn.AtLeastOnce,
		CommitInterval: 200 * time.Millisecond, MaxBatchRecords: 300, Lanes: 5, SessionTimeout: 3 * time.Second,
		TransactionTimeout: 4 * time.Second, ReplicationFactor: 3, AdvertiseAddr: "w1.example:9100",
	}, p.workerConfig())
	require.NoError(t, p.workerConfig().Validate())
	require.Equal(t, "json", p.logFormat)
	var b strings.Builder
	log := p.logger(&b)
	log.Info("not logged")
	log.Warn("logged")
	require.NotContains(t, b.String(), "not logged")
	require.Contains(t, b.String(), `"msg":"logged"`)
}

// Settings that cannot be acted on are usage errors that say which
// setting, where it came from and what is wrong, whichever of the three
// ways it was set.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		file string // config file contents; "" for none
		want []string
	}{
		{name: "unknown flag", args: []string{"--brokerz", "x"}, want: []string{"orders-app: ", "-brokerz"}},
		{name: "argument", args: []string{"extra"}, want: []string{`unexpected arguments ["extra"]`}},
		{name: "bad flag value", args: []string{"--guarantee", "twice"}, want: []string{"-guarantee", `unknown guarantee "twice"`}},
		{name: "bad env value", env: []string{"SLUICE_GUARANTEE=twice"}, want: []string{`invalid value "twice" for SLUICE_GUARANTEE`}},
		{name: "bad env duration", env: []string{"SLUICE_COMMIT_INTERVAL=soon"}, want: []string{"SLUICE_COMMIT_INTERVAL"}},
		{name: "bad log level", args: []string{"--log-level", "loud"}, want: []string{"-log-level"}},
		{name: "bad log format", env: []string{"SLUICE_LOG_FORMAT=xml"}, want: []string{`unknown log format "xml"`}},
		{name: "unknown key", file: "brokers: a:1\nbrokerz: b:1\n", want: []string{"line 2", `unknown key "brokerz"`}},
		{name: "unknown app key", file: "inputs: x\n", want: []string{`unknown key "inputs"`}},
		{name: "unknown key set elsewhere too", file: "brokerz: b:1\n", args: []string{"--brokers", "a:1"}, want: []string{`unknown key "brokerz"`}},
		{name: "config key", file: "config: other.yaml\n", want: []string{`key "config" cannot be set in a config file`}},
		{name: "print-config key", file: "print-config: true\n", want: []string{`key "print-config" cannot be set`}},
		{name: "duplicate key", file: "input: a\ninput: b\n", want: []string{`key "input" given twice`}},
		{name: "bad file value", file: "session-timeout: long\n", want: []string{"line 1", `invalid value "long" for key "session-timeout"`}},
		{name: "list value", file: "brokers: [a, b]\n", want: []string{`key "brokers": want a single value`}},
		{name: "null value", file: "metrics-addr:\n", want: []string{`key "metrics-addr": want a single value`}},
		{name: "not a mapping", file: "- brokers\n", want: []string{"want a mapping"}},
		{name: "not YAML", file: "brokers: [\n", want: []string{"config file"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/sluice.yaml"}, want: []string{"config file /nonexistent/sluice.yaml", "no such file"}},
		{name: "bad int", env: []string{"SLUICE_LANES=many"}, want: []string{`invalid value "many" for SLUICE_LANES`}},
		{name: "no batch records", args: []string{"--max-batch-records", "0"}, want: []string{"--max-batch-records 0: want at least 1"}},
		{name: "negative flush writes", env: []string{"SLUICE_STATE_FLUSH_WRITES=-3"},
			want: []string{"--state-flush-writes -3 (from SLUICE_STATE_FLUSH_WRITES): want at least 1"}},
		{name: "negative lanes", file: "lanes: -2\n", want: []string{"--lanes -2 (from ", "sluice.yaml): want at least 1, or 0 for the default"}},
		{name: "zero commit interval", args: []string{"--commit-interval", "0s"}, want: []string{"--commit-interval 0s: want a positive duration"}},
		{name: "negative session timeout", env: []string{"SLUICE_SESSION_TIMEOUT=-1s"}, want: []string{"--session-timeout -1s (from SLUICE_SESSION_TIMEOUT): want a positive duration"}},
		{name: "negative transaction timeout", args: []string{"--transaction-timeout", "-5s"}, want: []string{"--transaction-timeout -5s: want a positive duration"}},
		{name: "transaction timeout under the commit interval", args: []string{"--transaction-timeout", "50ms"},
			want: []string{"--transaction-timeout 50ms: shorter than --commit-interval 100ms"}},
		{name: "session timeout under the commit interval", file: "commit-interval: 15s\n",
			want: []string{"--transaction-timeout 10s: shorter than --commit-interval 15s"}},
		{name: "zero replication factor", args: []string{"--replication-factor", "0"}, want: []string{"--replication-factor 0: want -1 (the brokers' default) or 1 to 32767"}},
		{name: "replication factor too large", env: []string{"SLUICE_REPLICATION_FACTOR=40000"}, want: []string{"--replication-factor 40000 (from SLUICE_REPLICATION_FACTOR)"}},
		{name: "two bad values", args: []string{"--lanes", "-1", "--max-batch-records", "-1"}, want: []string{"--lanes -1: ", "--max-batch-records -1: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--instance", "w1"}, tt.args...)
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			_, err := parse(testApp, args, tt.env)
			var uerr *UsageError
			require.ErrorAs(t, err, &uerr)
			require.True(t, strings.HasPrefix(err.Error(), "orders-app: "), err.Error())
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
			require.Equal(t, 2, exit(err, "orders", &strings.Builder{}, &strings.Builder{}))
		})
	}
}

// An empty config file sets nothing; a set key whose value is the empty
// string sets it empty (metrics off).
func TestConfigFileEmptyValues(t *testing.T) {
	p, err := parse(testApp, []string{"--instance", "w1", "--config", writeFile(t, "")}, nil)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9100", p.metricsAddr)
	p, err = parse(testApp, []string{"--instance", "w1", "--config", writeFile(t, "metrics-addr: \"\"\n")}, nil)
	require.NoError(t, err)
	require.Equal(t, "", p.metricsAddr)
}

// An App without a name or flags is a programming error, not a usage
// error.
func TestAppIncomplete(t *testing.T) {
	for _, app := range []App{{Name: "x"}, {Flags: testApp.Flags}} {
		_, err := parse(app, nil, nil)
		require.ErrorContains(t, err, "service: App needs a Name and Flags")
		require.Equal(t, 1, exit(err, "x", &strings.Builder{}, &strings.Builder{}))
	}
}

// SLUICE_ variables that name no setting are reported, not refused;
// other variables are not reported.
func TestStrayEnv(t *testing.T) {
	p, err := parse(testApp, []string{"--instance", "w1", "--brokers", "a:1"},
		[]string{"SLUICE_BROKER=typo", "SLUICE_BROKERS=b:1", "SLUICE_INPUT=x", "SLUICE_DATA_DIR=/d", "PATH=/bin", "SLUICE_lower=x"})
	require.NoError(t, err)
	require.Equal(t, []string{"SLUICE_BROKER", "SLUICE_DATA_DIR"}, p.strayEnv)
}

// --help lists every flag, the worker's and the app's, and exits 0.
func TestHelp(t *testing.T) {
	_, err := parse(testApp, []string{"--help"}, nil)
	require.ErrorIs(t, err, flag.ErrHelp)
	var help *HelpError
	require.ErrorAs(t, err, &help)
	for _, name := range []string{"-brokers", "-config", "-print-config", "-log-format", "-input"} {
		require.Contains(t, help.Flags, name)
	}
	require.Contains(t, help.Flags, "(default exactly_once)")
	var out strings.Builder
	require.Equal(t, 0, exit(err, "orders", &out, &strings.Builder{}))
	require.Contains(t, out.String(), "Usage: orders [flags]")
	require.Contains(t, out.String(), "-input string")
}

// --print-config writes a config file that gives the same settings when
// read back, also with nothing else set.
func TestPrintConfigRoundTrips(t *testing.T) {
	p, err := parse(testApp, []string{"--instance", "w1", "--guarantee", "at_least_once", "--metrics-addr", "",
		"--input", "true", "--print-config"}, []string{"SLUICE_COMMIT_INTERVAL=1s"})
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, p.writeConfig(&out))
	require.Contains(t, out.String(), "commit-interval: 1s # SLUICE_COMMIT_INTERVAL\n")
	require.Contains(t, out.String(), "session-timeout: 10s # default\n")
	require.Contains(t, out.String(), "transaction-timeout: 10s # default\n")
	require.Contains(t, out.String(), "replication-factor: \"-1\" # default\n")
	require.Contains(t, out.String(), "max-batch-records: \"20000\" # default\n")
	require.NotContains(t, out.String(), "print-config:")

	q, err := parse(testApp, []string{"--config", writeFile(t, out.String())}, nil)
	require.NoError(t, err)
	p.fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "print-config" && f.Name != "config" {
			require.Equal(t, f.Value.String(), q.fs.Lookup(f.Name).Value.String(), f.Name)
		}
	})
}
