package batch

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Every record added reaches produce, in order, before close returns,
// whatever the number of chunks; a pipe closed with nothing added
// produces nothing.
func TestPipeProducesEverythingInOrderBeforeClose(t *testing.T) {
	for _, n := range []int{0, 1, pipeChunk - 1, pipeChunk, pipeChunk + 1, pipeChunk * (pipeDepth + 3)} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var got []int64 // written by the pipe's goroutine only
			p := newPipe(func(r *kgo.Record) { got = append(got, r.Offset) })
			for i := range n {
				p.add(&kgo.Record{Offset: int64(i)})
			}
			p.close()
			want := make([]int64, n)
			for i := range want {
				want[i] = int64(i)
			}
			require.Equal(t, len(want), len(got))
			if n > 0 {
				require.Equal(t, want, got)
			}
		})
	}
}
