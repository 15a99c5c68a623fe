package streamtest_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/stream/serde"
	"github.com/sluicehq/sluice/stream/streamtest"
	"github.com/stretchr/testify/require"
)

// The driver keeps the records of a topic until they are read, and no
// longer: a long test that reads its outputs runs in bounded memory. (The
// tasks reuse their output records' memory; the driver copies them.)
func TestReadOutputsAreReleased(t *testing.T) {
	b := stream.NewBuilder("mem")
	stream.From(b, "in", serde.Bytes, serde.Bytes).To("out", serde.Bytes, serde.Bytes)
	topo, err := b.Build()
	require.NoError(t, err)
	d := streamtest.New(topo)
	defer d.Close()
	out := streamtest.Output(d, "out", serde.Bytes, serde.Bytes)
	value := bytes.Repeat([]byte("v"), 1000)
	pipe := func(n int) {
		for i := range n {
			require.NoError(t, d.PipeBytes("in", []byte("k"), value, time.Unix(int64(i), 0)))
			if i%1000 == 999 {
				got, err := out.ReadAll()
				require.NoError(t, err)
				require.Len(t, got, 1000)
			}
		}
	}
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	pipe(10_000)
	before := live()
	pipe(200_000) // 34 MB of records, were they kept
	after := live()
	t.Logf("live heap %d KB → %d KB", before>>10, after>>10)
	require.Less(t, int64(after)-int64(before), int64(8<<20), "live heap %d MB → %d MB", before>>20, after>>20)
}
