package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/window"
)

// maxTime is the latest time a window key can encode: an upper bound for
// range scans over one key's windows.
var maxTime = time.UnixMilli(math.MaxInt64).UTC()

// keyedCodec encodes a key and window for scans over one key's windows:
// the key's encoding prefixed with its length (4 bytes), so that one key's
// entries are contiguous and no other key's fall among them, then two
// times in milliseconds (8 bytes each, encoded so that byte order is time
// order): start then end, or, with endFirst (session stores), end then
// start.
type keyedCodec[K any] struct {
	ks       serde.Serde[K]
	endFirst bool
}

func (c keyedCodec[K]) Encode(k window.Keyed[K]) ([]byte, error) {
	kb, err := c.ks.Encode(k.Key)
	if err != nil {
		return nil, err
	}
	if uint64(len(kb)) > math.MaxUint32 {
		return nil, fmt.Errorf("stream: window key of %d bytes is too long", len(kb))
	}
	first, second := k.Window.Start, k.Window.End
	if c.endFirst {
		first, second = second, first
	}
	out := make([]byte, 0, 4+len(kb)+16)
	out = binary.BigEndian.AppendUint32(out, uint32(len(kb)))
	out = append(out, kb...)
	out = binary.BigEndian.AppendUint64(out, uint64(first.UnixMilli())^1<<63)
	return binary.BigEndian.AppendUint64(out, uint64(second.UnixMilli())^1<<63), nil
}

func (c keyedCodec[K]) Decode(b []byte) (window.Keyed[K], error) {
	var k window.Keyed[K]
	if len(b) < 4 {
		return k, errors.New("stream: window key shorter than its length")
	}
	n := int(binary.BigEndian.Uint32(b))
	if len(b) != 4+n+16 {
		return k, fmt.Errorf("stream: window key of %d bytes, want %d", len(b), 4+n+16)
	}
	key, err := c.ks.Decode(b[4 : 4+n])
	if err != nil {
		return k, fmt.Errorf("stream: window key: %w", err)
	}
	first := time.UnixMilli(int64(binary.BigEndian.Uint64(b[4+n:]) ^ 1<<63)).UTC()
	second := time.UnixMilli(int64(binary.BigEndian.Uint64(b[4+n+8:]) ^ 1<<63)).UTC()
	if c.endFirst {
		first, second = second, first
	}
	return window.Keyed[K]{Key: key, Window: window.Window{Start: first, End: second}}, nil
}

// newKeyedStore declares a window store whose keys are encoded by kc (so
// that one key's windows are found with one range scan) and whose values
// by vc: an expiring store, changelogged to `<app-id>-<name>-changelog`.
func newKeyedStore[K, A any](b *Builder, name string, kc keyedCodec[K], vc state.Codec[A]) windowStore[K, A] {
	s := &storeSpec{name: name}
	s.open = func(t *task) (any, error) {
		topic := s.changelogTopic(b.appID)
		return state.NewExpiring(t.db, name, topic, t.newChangelogWriter(topic), state.Codec[window.Keyed[K]](kc), vc)
	}
	if !validTopic.MatchString(name) || len(name) > 200 {
		b.errorf("store name %q: use 1 to 200 of [a-zA-Z0-9._-] (it names the changelog topic)", name)
	}
	b.stores = append(b.stores, s)
	return windowStore[K, A]{s: s}
}

// millis returns the time of ms milliseconds since the epoch, in UTC (as
// window keys decode).
func millis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
