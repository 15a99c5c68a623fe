package topology

// The names of the internal topics of app, the application id: every
// package that needs one (the DSL, its test driver, the benchmarks)
// derives it here.

// ChangelogTopic returns the changelog topic of store: `<app>-<store>-changelog`.
func ChangelogTopic(app, store string) string { return app + "-" + store + "-changelog" }

// RepartitionTopic returns the repartition topic named name:
// `<app>-<name>-repartition`.
func RepartitionTopic(app, name string) string { return app + "-" + name + "-repartition" }

// DLQTopic returns the dead-letter topic: `<app>-dlq`.
func DLQTopic(app string) string { return app + "-dlq" }
