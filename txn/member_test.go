package txn

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A member's UserData carries its advertised address, read back as it
// was written; UserData of another kind (franz-go's cooperative-sticky
// data, which a member without an address sends), cut short or empty
// advertises nothing; fields a later version appends are ignored.
func TestMemberDataRoundTrips(t *testing.T) {
	b := appendMemberData(nil, "worker-1.example:9100")
	addr, ok := parseMemberData(b)
	require.True(t, ok)
	require.Equal(t, "worker-1.example:9100", addr)

	later := append(slices.Clone(b), "a later field"...)
	later[len(memberDataMagic)] = 2 // a later version
	addr, ok = parseMemberData(later)
	require.True(t, ok)
	require.Equal(t, "worker-1.example:9100", addr)

	sticky := kmsg.NewStickyMemberMetadata()
	sticky.Generation = 7
	for _, data := range [][]byte{nil, {}, sticky.AppendTo(nil), b[:len(b)-1], b[:len(memberDataMagic)+2]} {
		_, ok := parseMemberData(data)
		require.False(t, ok, "%q", data)
	}
}

// The join metadata with an address differs from the one without only in
// its UserData: the topics, owned partitions and generation the balancer
// assigns by are the same; without an address it is unchanged.
func TestJoinMetadataCarriesTheAddress(t *testing.T) {
	plain := newTaskBalancer(enrichGroups, nil)
	advertising := newTaskBalancer(enrichGroups, nil)
	advertising.advertise = "10.0.0.7:9100"
	owned := map[string][]int32{"customers": {1, 3}, "repartition": {1, 3}}
	topics := []string{"customers", "orders", "repartition"}

	without := plain.JoinGroupMetadata(topics, owned, 4)
	with := advertising.JoinGroupMetadata(topics, owned, 4)
	read := func(b []byte) kmsg.ConsumerMemberMetadata {
		var m kmsg.ConsumerMemberMetadata
		m.Default()
		require.NoError(t, m.ReadFrom(b))
		return m
	}
	mw, mo := read(with), read(without)
	addr, ok := parseMemberData(mw.UserData)
	require.True(t, ok)
	require.Equal(t, "10.0.0.7:9100", addr)
	_, ok = parseMemberData(mo.UserData)
	require.False(t, ok)
	require.Equal(t, kgo.CooperativeStickyBalancer().JoinGroupMetadata(topics, owned, 4), without, "no address: the metadata is cooperative-sticky's")
	mw.UserData, mo.UserData = nil, nil
	require.Equal(t, mo, mw)
}

// Members that advertise addresses, and a mix of members that do and do
// not (an older sluice), are assigned exactly what members without
// addresses are, round after round: the address changes no assignment.
func TestAddressesChangeNoAssignment(t *testing.T) {
	partitions := map[string]int32{"customers": 12, "repartition": 12, "orders": 12}
	all := []string{"customers", "orders", "repartition"}
	rng := rand.New(rand.NewPCG(3, 5))
	plain := newTaskBalancer(enrichGroups, nil)
	var plainMs, mixedMs []*balanceMember
	live := map[string]bool{}
	for round := range 40 {
		id := fmt.Sprintf("m%d", rng.IntN(5))
		live[id] = !live[id] // joins or leaves
		var ms []*balanceMember
		for _, m := range plainMs {
			if live[m.id] {
				ms = append(ms, m)
			}
		}
		if live[id] && !slices.ContainsFunc(ms, func(m *balanceMember) bool { return m.id == id }) {
			ms = append(ms, &balanceMember{id: id, topics: all})
		}
		plainMs = ms
		slices.SortFunc(plainMs, func(a, b *balanceMember) int { return strings.Compare(a.id, b.id) })
		mixedMs = mixedMs[:0]
		for _, m := range plainMs {
			mixedMs = append(mixedMs, &balanceMember{id: m.id, topics: m.topics, owned: m.owned, generation: m.generation})
		}
		if len(plainMs) == 0 {
			continue
		}
		want := balanceRound(t, plain, plainMs, partitions)
		// Each member encodes its own metadata: those with an even
		// number advertise an address.
		got := balanceRoundEach(t, mixedMs, partitions, func(id string) kgo.GroupBalancer {
			b := newTaskBalancer(enrichGroups, nil)
			if id[len(id)-1]%2 == 0 {
				b.advertise = id + ".example:9100"
			}
			return b
		})
		require.Equal(t, want, got, "round %d", round)
		for _, m := range plainMs {
			m.owned, m.generation = want[m.id], int32(round+1)
		}
	}
}

// balanceRoundEach is balanceRound with each member's metadata encoded by
// its own balancer (balancerOf), and the first member's balancing.
func balanceRoundEach(t *testing.T, ms []*balanceMember, partitions map[string]int32, balancerOf func(id string) kgo.GroupBalancer) map[string]map[string][]int32 {
	t.Helper()
	var join []kmsg.JoinGroupResponseMember
	for _, m := range ms {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		jm.ProtocolMetadata = balancerOf(m.id).JoinGroupMetadata(slices.Sorted(slices.Values(m.topics)), m.owned, m.generation)
		join = append(join, jm)
	}
	leader := balancerOf(ms[0].id)
	mb, _, err := leader.MemberBalancer(join)
	require.NoError(t, err)
	into, err := mb.(*kgo.ConsumerBalancer).BalanceOrError(partitions)
	require.NoError(t, err)
	out := map[string]map[string][]int32{}
	for _, a := range into.IntoSyncAssignment() {
		got, err := leader.ParseSyncAssignment(a.MemberAssignment)
		require.NoError(t, err)
		out[a.MemberID] = got
	}
	return out
}

// An advertised address must be one others can dial.
func TestAdvertiseAddrValidated(t *testing.T) {
	for _, addr := range []string{"worker-1:9100", "10.0.0.7:9100", "[::1]:9100"} {
		require.NoError(t, Config{Brokers: []string{"b:9092"}, Instance: "w", AdvertiseAddr: addr}.Validate(), addr)
	}
	for addr, want := range map[string]string{
		"worker-1":      "want host:port",
		":9100":         "want a host and a port",
		"worker-1:0":    "want a host and a port",
		"0.0.0.0:9100":  "no address others can reach",
		"[::]:9100":     "no address others can reach",
		"http://w:9100": "want host:port",
	} {
		require.ErrorContains(t, Config{Brokers: []string{"b:9092"}, Instance: "w", AdvertiseAddr: addr}.Validate(), want, addr)
	}
}
