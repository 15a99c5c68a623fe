package service

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/txn"
	"go.yaml.in/yaml/v3"
)

// EnvName returns the environment variable that sets the flag called
// name: data-dir => SLUICE_DATA_DIR.
func EnvName(name string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// settingEnv is what an environment variable that looks like a setting
// looks like; the ones that set no flag are reported (not an error: one
// environment often serves several programs).
var settingEnv = regexp.MustCompile(`^SLUICE_[A-Z0-9_]+$`)

// workerFlags are the worker's own settings, before the app's.
type workerFlags struct {
	brokers            string
	appID              string
	instance           string
	stateDir           string
	stateFlushWrites   int
	guarantee          txn.Guarantee
	commitInterval     time.Duration
	maxBatchRecords    int
	lanes              int
	sessionTimeout     time.Duration
	transactionTimeout time.Duration
	replicationFactor  int
	metricsAddr        string
	advertiseAddr      string
	logLevel           slog.Level
	logFormat          string
	config             string
	printConfig        bool
}

// notInFile are the flags a config file cannot set: they say which file
// to read and what to do with it.
var notInFile = []string{"config", "print-config"}

// register defines the worker's flags on fs and returns their names in
// the order --help, --print-config and docs/config.md list them.
func (f *workerFlags) register(fs *flag.FlagSet) []string {
	var names []string
	str := func(p *string, name, value, usage string) {
		fs.StringVar(p, name, value, usage)
		names = append(names, name)
	}
	dur := func(p *time.Duration, name string, value time.Duration, usage string) {
		fs.DurationVar(p, name, value, usage)
		names = append(names, name)
	}
	val := func(v flag.Value, name, usage string) {
		fs.Var(v, name, usage)
		names = append(names, name)
	}
	num := func(p *int, name string, value int, usage string) {
		fs.IntVar(p, name, value, usage)
		names = append(names, name)
	}
	str(&f.brokers, "brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	str(&f.appID, "app-id", "", "application id: consumer group, transactional id and internal topic prefix (default: APP)")
	str(&f.instance, "instance", "", "stable id of this worker: static group member id, transactional id <app-id>-<instance> (default: hostname)")
	str(&f.stateDir, "state-dir", "", "local state directory: the stores of this worker's tasks (default: ./state/<app-id>/<instance>)")
	num(&f.stateFlushWrites, "state-flush-writes", state.DefaultFlushWrites, "committed state writes a task holds in memory at most before flushing them to disk: bounds the changelog replay after a crash")
	val(guaranteeValue{&f.guarantee}, "guarantee", "exactly_once, at_least_once or at_most_once")
	dur(&f.commitInterval, "commit-interval", 100*time.Millisecond, "longest a transaction collects records")
	num(&f.maxBatchRecords, "max-batch-records", 20_000, "most input records one transaction covers")
	num(&f.lanes, "lanes", 0, "goroutines that process a batch's records, each task always on the same one (default: GOMAXPROCS, at most 8)")
	dur(&f.sessionTimeout, "session-timeout", 10*time.Second, "group session timeout: how long a dead worker's partitions wait before they move")
	dur(&f.transactionTimeout, "transaction-timeout", 0, "how long the broker lets a transaction stay open before it aborts it: bounds how long a dead worker's open transaction holds up read_committed readers; at most the brokers' transaction.max.timeout.ms (default: --session-timeout)")
	num(&f.replicationFactor, "replication-factor", -1, "replication factor of the internal topics the worker creates (changelog, repartition, DLQ); -1: the brokers' default")
	str(&f.metricsAddr, "metrics-addr", "127.0.0.1:9100", "serve Prometheus metrics, the probes and interactive queries on this address; empty: off")
	str(&f.advertiseAddr, "advertise-addr", "", "host:port at which other workers and clients reach this worker's --metrics-addr, published to the group: a query of a key another worker holds redirects there; empty: none")
	f.logLevel = slog.LevelInfo
	val(levelValue{&f.logLevel}, "log-level", "debug, info, warn or error")
	f.logFormat = "text"
	val(formatValue{&f.logFormat}, "log-format", "text or json (log/slog's handlers, on stderr)")
	str(&f.config, "config", "", "YAML file of settings, keyed by flag name; flags and SLUICE_ variables win over it")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the effective settings as YAML (a config file) and exit")
	names = append(names, "print-config")
	return names
}

// guaranteeValue is the flag.Value of --guarantee.
type guaranteeValue struct{ g *txn.Guarantee }

func (v guaranteeValue) String() string {
	if v.g == nil { // the flag package's zero value, for --help
		return ""
	}
	return v.g.String()
}

func (v guaranteeValue) Set(s string) (err error) {
	*v.g, err = txn.ParseGuarantee(s)
	return err
}

// levelValue is the flag.Value of --log-level: slog's level names (and
// offsets such as warn+2), lower case.
type levelValue struct{ l *slog.Level }

func (v levelValue) String() string {
	if v.l == nil {
		return ""
	}
	return strings.ToLower(v.l.String())
}

func (v levelValue) Set(s string) error { return v.l.UnmarshalText([]byte(s)) }

// formatValue is the flag.Value of --log-format.
type formatValue struct{ f *string }

func (v formatValue) String() string {
	if v.f == nil {
		return ""
	}
	return *v.f
}

func (v formatValue) Set(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("unknown log format %q: use text or json", s)
	}
	*v.f = s
	return nil
}

// parsed is a worker program's settings: its command line resolved
// against its environment and config file, defaults filled in.
type parsed struct {
	workerFlags
	name   string        // the app's name: default app id, message prefix
	fs     *flag.FlagSet // the worker's flags and the app's
	worker []string      // the worker's flag names, in their order
	// from says where each flag set other than by default got its value:
	// "flag", the environment variable's name, or the config file's.
	from map[string]string
	// strayEnv are SLUICE_ variables that set no flag, sorted.
	strayEnv []string
	build    func(appID string) (*stream.Topology, error)
}

// parse resolves a worker program's settings: app's flags and the
// worker's from args, then environ (os.Environ's form) for those the
// command line left alone, then the config file for those still unset.
// It returns a *HelpError for -h/--help, a *UsageError for settings it
// cannot act on, from any of the three, and another error for an App
// without Name or Flags or a machine without a hostname.
func parse(app App, args, environ []string) (*parsed, error) {
	if app.Name == "" || app.Flags == nil {
		return nil, errors.New("service: App needs a Name and Flags")
	}
	p := &parsed{name: app.Name, from: map[string]string{}}
	usage := func(format string, a ...any) error {
		return &UsageError{fmt.Errorf(p.name+": "+format, a...)}
	}
	p.fs = flag.NewFlagSet(app.Name, flag.ContinueOnError)
	p.fs.SetOutput(io.Discard)
	p.worker = p.register(p.fs)
	p.build = app.Flags(p.fs)

	if err := p.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			p.fs.SetOutput(&b)
			p.fs.PrintDefaults()
			return nil, &HelpError{Flags: b.String()}
		}
		return nil, usage("%v", err)
	}
	if p.fs.NArg() > 0 {
		return nil, usage("unexpected arguments %q", p.fs.Args())
	}
	p.fs.Visit(func(f *flag.Flag) { p.from[f.Name] = "flag" })

	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var err error
	p.fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		v, ok := env[name]
		delete(env, name)
		if !ok || err != nil || p.from[f.Name] != "" {
			return
		}
		if serr := p.fs.Set(f.Name, v); serr != nil {
			err = usage("invalid value %q for %s: %v", v, name, serr)
		}
		p.from[f.Name] = name
	})
	if err != nil {
		return nil, err
	}
	for name := range env {
		if settingEnv.MatchString(name) {
			p.strayEnv = append(p.strayEnv, name)
		}
	}
	slices.Sort(p.strayEnv)

	if p.config != "" {
		if err := p.readConfig(p.config); err != nil {
			return nil, usage("config file %s: %v", p.config, err)
		}
	}
	if err := p.fillDefaults(); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, usage("%w", err)
	}
	return p, nil
}

// readConfig sets the flags that neither the command line nor the
// environment set from the YAML mapping in file. A key that names no
// flag, or one the file cannot set, is an error that names it; so is a
// value that is not a single scalar or does not parse.
func (p *parsed) readConfig(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if doc.Kind == 0 { // empty file
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of settings (flag name: value)", m.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := k.Value
		switch {
		case p.fs.Lookup(key) == nil:
			return fmt.Errorf("line %d: unknown key %q: not a setting of %s (the keys are the flag names: see --help)", k.Line, key, p.name)
		case slices.Contains(notInFile, key):
			return fmt.Errorf("line %d: key %q cannot be set in a config file, only as --%s or %s", k.Line, key, key, EnvName(key))
		case seen[key]:
			return fmt.Errorf("line %d: key %q given twice", k.Line, key)
		case v.Kind != yaml.ScalarNode || v.Tag == "!!null":
			return fmt.Errorf("line %d: key %q: want a single value (\"\" for empty)", v.Line, key)
		}
		seen[key] = true
		if p.from[key] != "" {
			continue
		}
		if err := p.fs.Set(key, v.Value); err != nil {
			return fmt.Errorf("line %d: invalid value %q for key %q: %v", v.Line, v.Value, key, err)
		}
		p.from[key] = file
	}
	return nil
}

// fillDefaults fills in the defaults that depend on other settings or on
// the machine, on the flags themselves, so --print-config shows them.
func (p *parsed) fillDefaults() error {
	if p.appID == "" {
		p.appID = p.name
	}
	if p.instance == "" {
		var err error
		if p.instance, err = os.Hostname(); err != nil || p.instance == "" {
			return fmt.Errorf("%s: no --instance and no hostname: pass --instance", p.name)
		}
	}
	if p.stateDir == "" {
		p.stateDir = filepath.Join("state", p.appID, p.instance)
	}
	// txn's own defaults, so that the two cannot disagree.
	d := txn.Config{SessionTimeout: p.sessionTimeout}.WithDefaults()
	if p.lanes == 0 {
		p.lanes = d.Lanes
	}
	if p.transactionTimeout == 0 {
		p.transactionTimeout = d.TransactionTimeout
	}
	return nil
}

// check reports the settings that parse but that no worker can run
// with, each naming its flag, its value and where that came from.
func (p *parsed) check() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		at := ""
		if from := p.from[name]; from != "" && from != "flag" {
			at = " (from " + from + ")"
		}
		errs = append(errs, fmt.Errorf("--%s %s%s: %s", name, p.fs.Lookup(name).Value, at, fmt.Sprintf(format, a...)))
	}
	for name, v := range map[string]int{"state-flush-writes": p.stateFlushWrites, "max-batch-records": p.maxBatchRecords} {
		if v < 1 {
			bad(name, "want at least 1")
		}
	}
	if p.lanes < 1 {
		bad("lanes", "want at least 1, or 0 for the default")
	}
	for name, v := range map[string]time.Duration{"commit-interval": p.commitInterval, "session-timeout": p.sessionTimeout, "transaction-timeout": p.transactionTimeout} {
		if v <= 0 {
			bad(name, "want a positive duration")
		}
	}
	if p.transactionTimeout > 0 && p.transactionTimeout < p.commitInterval {
		bad("transaction-timeout", "shorter than --commit-interval %v: a transaction would be aborted before it commits", p.commitInterval)
	}
	if p.replicationFactor != -1 && (p.replicationFactor < 1 || p.replicationFactor > math.MaxInt16) {
		bad("replication-factor", "want -1 (the brokers' default) or 1 to %d", math.MaxInt16)
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// workerConfig is the txn.Config the settings give, without the logger
// and registerer that Run adds.
func (p *parsed) workerConfig() txn.Config {
	return txn.Config{
		Brokers:            strings.Split(p.brokers, ","),
		Instance:           p.instance,
		StateDir:           p.stateDir,
		StateFlushWrites:   p.stateFlushWrites,
		Guarantee:          p.guarantee,
		CommitInterval:     p.commitInterval,
		MaxBatchRecords:    p.maxBatchRecords,
		Lanes:              p.lanes,
		SessionTimeout:     p.sessionTimeout,
		TransactionTimeout: p.transactionTimeout,
		ReplicationFactor:  p.replicationFactor,
		AdvertiseAddr:      p.advertiseAddr,
	}
}

// writeConfig writes the effective settings as a YAML config file: the
// worker's, then the app's own, each with its flag's usage above it and
// where its value came from beside it.
func (p *parsed) writeConfig(w io.Writer) error {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	add := func(f *flag.Flag, head string) {
		from := p.from[f.Name]
		if from == "" {
			from = "default"
		}
		doc.Content = append(doc.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: f.Name, HeadComment: strings.TrimSpace(head + "\n" + f.Usage)},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.Value.String(), LineComment: from})
	}
	for _, name := range p.worker {
		if !slices.Contains(notInFile, name) {
			add(p.fs.Lookup(name), "")
		}
	}
	head := fmt.Sprintf("The settings of %s itself.\n", p.name)
	p.fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(p.worker, f.Name) {
			add(f, head)
			head = ""
		}
	})
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
