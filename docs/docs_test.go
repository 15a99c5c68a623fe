// Package docs holds the project's documentation; its test keeps the
// pages' references inside the repository and their links working.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// outside are references to files that are not in the repository: the
// project's working notes, which readers of a clone do not have.
var outside = regexp.MustCompile(`\b(DESIGN|CONTRACT|STYLE)\.md\b|\.\./shared\b|/work/`)

var (
	fenced  = regexp.MustCompile("(?ms)^```.*?^```")
	inline  = regexp.MustCompile("`[^`\n]*`")
	link    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
)

// pages are the markdown files the test reads: docs/*.md and the
// repository's README.md, by their path from the repository's root.
func pages(t *testing.T) map[string]string {
	t.Helper()
	names, err := filepath.Glob("*.md")
	require.NoError(t, err)
	got := map[string]string{}
	for _, rel := range append(names, "../README.md") {
		b, err := os.ReadFile(rel)
		require.NoError(t, err)
		got[filepath.ToSlash(filepath.Join("docs", rel))] = string(b)
	}
	require.Contains(t, got, "docs/getting-started.md")
	return got
}

// No page refers to a file outside the repository.
func TestNoReferenceOutsideTheRepository(t *testing.T) {
	for name, text := range pages(t) {
		for i, line := range strings.Split(text, "\n") {
			if m := outside.FindString(line); m != "" {
				t.Errorf("%s:%d refers to %q, which is not in the repository: %s", name, i+1, m, line)
			}
		}
	}
}

// Every relative link of a page names a file of the repository, and a
// heading of it when it has a #fragment.
func TestLinksResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	for name, text := range pages(t) {
		prose := inline.ReplaceAllString(fenced.ReplaceAllString(text, ""), "")
		for _, m := range link.FindAllStringSubmatch(prose, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, fragment, _ := strings.Cut(target, "#")
			path := filepath.Join(root, filepath.Dir(name), file)
			if file == "" {
				path = filepath.Join(root, name)
			}
			if rel, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links to %s, outside the repository", name, target)
				continue
			}
			b, err := os.ReadFile(path)
			if err != nil {
				if fi, serr := os.Stat(path); serr == nil && fi.IsDir() && fragment == "" {
					continue
				}
				t.Errorf("%s links to %s: %v", name, target, err)
				continue
			}
			if fragment != "" && !hasAnchor(string(b), fragment) {
				t.Errorf("%s links to %s: %s has no heading #%s", name, target, file, fragment)
			}
		}
	}
}

// hasAnchor tells whether a heading of the markdown text has the anchor
// GitHub gives it: lower case, punctuation dropped, spaces as hyphens.
func hasAnchor(text, anchor string) bool {
	for _, m := range heading.FindAllStringSubmatch(fenced.ReplaceAllString(text, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}
