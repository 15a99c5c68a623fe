package txn

import (
	"bytes"
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A worker publishes its advertised address (Config.AdvertiseAddr) to
// its group in the UserData of its JoinGroup member metadata
// (kmsg.ConsumerMemberMetadata), which the group coordinator keeps and
// DescribeGroups returns to any member (directory.go).
//
// # Encoding
//
// UserData is memberDataMagic, a version byte, then the address as a
// big-endian uint16 length and its bytes. A later version appends
// fields after these; a reader ignores what it does not know. UserData
// that does not start with the magic (a sluice that advertises nothing
// leaves franz-go's cooperative-sticky user data there) has no address.
//
// Nothing else reads UserData: the task balancer assigns by the
// metadata's topics, owned partitions and generation only, so members
// with and without an address, of this sluice and of older ones, balance
// alike.

// memberDataMagic starts a sluice member's UserData.
var memberDataMagic = []byte("\x00sluice")

const memberDataVersion = 1

// appendMemberData appends the UserData that advertises addr to dst.
func appendMemberData(dst []byte, addr string) []byte {
	dst = append(dst, memberDataMagic...)
	dst = append(dst, memberDataVersion)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(addr)))
	return append(dst, addr...)
}

// parseMemberData returns the address a member's UserData advertises; ok
// is false when it advertises none, or cannot be read.
func parseMemberData(b []byte) (addr string, ok bool) {
	rest, found := bytes.CutPrefix(b, memberDataMagic)
	if !found || len(rest) < 3 || rest[0] < 1 {
		return "", false
	}
	n := int(binary.BigEndian.Uint16(rest[1:3]))
	if len(rest) < 3+n || n == 0 {
		return "", false
	}
	return string(rest[3 : 3+n]), true
}

// withAddress returns the JoinGroup metadata meta, a
// kmsg.ConsumerMemberMetadata, with UserData advertising addr; meta as
// it is when addr is "" or meta cannot be read.
func withAddress(meta []byte, addr string) []byte {
	if addr == "" {
		return meta
	}
	var m kmsg.ConsumerMemberMetadata
	m.Default()
	if err := m.ReadFrom(meta); err != nil {
		return meta
	}
	m.UserData = appendMemberData(nil, addr)
	return m.AppendTo(nil)
}
