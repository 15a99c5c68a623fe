package serde_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/stream/serde"
	"github.com/stretchr/testify/require"
)

type Order struct {
	ID    string `json:"order_id"`
	Cents int64  `json:"cents"`
	Tags  []string
}

// requireSerdeError checks that err is a *serde.Error with the given fields
// and returns it for further checks.
func requireSerdeError(t *testing.T, err error, name, typ, op string) *serde.Error {
	t.Helper()
	require.Error(t, err)
	var se *serde.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, name, se.Serde, "Serde names the serde")
	require.Equal(t, typ, se.Type, "Type names the Go type")
	require.Equal(t, op, se.Op)
	require.Contains(t, err.Error(), "serde: "+name+" "+op+" "+typ)
	return se
}

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"ascii", "order-1"},
		{"utf8", "naïve café ☕"},
		{"nul bytes", "a\x00b"},
		{"invalid utf8 kept as is", "\xff\xfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := serde.String.Encode(tt.in)
			require.NoError(t, err)
			require.Equal(t, []byte(tt.in), b, "String must be byte-compatible with Kafka's StringSerde")
			got, err := serde.String.Decode(b)
			require.NoError(t, err)
			require.Equal(t, tt.in, got)
		})
	}
	t.Run("null decodes to empty", func(t *testing.T) {
		got, err := serde.String.Decode(nil)
		require.NoError(t, err)
		require.Equal(t, "", got)
	})
}

func TestBytes(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"null stays nil", nil},
		{"empty", []byte{}},
		{"binary", []byte{0, 1, 2, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := serde.Bytes.Encode(tt.in)
			require.NoError(t, err)
			got, err := serde.Bytes.Decode(b)
			require.NoError(t, err)
			require.Equal(t, tt.in, got)
			require.Equal(t, tt.in == nil, got == nil, "null and empty must stay distinct")
		})
	}
	t.Run("no copy", func(t *testing.T) {
		in := []byte("abc")
		enc, err := serde.Bytes.Encode(in)
		require.NoError(t, err)
		dec, err := serde.Bytes.Decode(in)
		require.NoError(t, err)
		require.Same(t, &in[0], &enc[0], "Encode returns its argument")
		require.Same(t, &in[0], &dec[0], "Decode returns the record's own slice")
	})
}

func TestInt64RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   int64
	}{
		{"zero", 0},
		{"one", 1},
		{"minus one", -1},
		{"negative", -123456789},
		{"positive", 987654321},
		{"min", math.MinInt64},
		{"max", math.MaxInt64},
		{"min+1", math.MinInt64 + 1},
		{"max-1", math.MaxInt64 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := serde.Int64.Encode(tt.in)
			require.NoError(t, err)
			require.Len(t, b, 8)
			got, err := serde.Int64.Decode(b)
			require.NoError(t, err)
			require.Equal(t, tt.in, got)
		})
	}
}

func TestInt64ByteOrderIsNumericOrder(t *testing.T) {
	values := []int64{
		math.MinInt64, math.MinInt64 + 1, -1 << 40, -65536, -256, -255, -2, -1,
		0, 1, 2, 255, 256, 65536, 1 << 40, math.MaxInt64 - 1, math.MaxInt64,
	}
	require.True(t, slices.IsSorted(values))
	encoded := make([][]byte, len(values))
	for i, v := range values {
		b, err := serde.Int64.Encode(v)
		require.NoError(t, err)
		encoded[i] = b
	}
	for i := 1; i < len(encoded); i++ {
		require.Equal(t, -1, bytes.Compare(encoded[i-1], encoded[i]),
			"Encode(%d)=%x must sort before Encode(%d)=%x", values[i-1], encoded[i-1], values[i], encoded[i])
	}
	// And sorting the bytes gives back the numeric order.
	shuffled := slices.Clone(encoded)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, bytes.Compare)
	require.Equal(t, encoded, shuffled)
}

// The doc of serde.Int64 says: "For values ≥ 0 the bytes equal Kafka's
// LongSerializer". Kafka's LongSerializer writes the plain big-endian two's
// complement, so 1 is 00 00 00 00 00 00 00 01.
func TestInt64NonNegativeMatchesKafkaLongSerializer(t *testing.T) {
	for _, v := range []int64{0, 1, 42, math.MaxInt64} {
		b, err := serde.Int64.Encode(v)
		require.NoError(t, err)
		kafka := []byte{
			byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32),
			byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v),
		}
		require.Equal(t, kafka, b,
			"BUG: serde.Int64 doc promises Kafka LongSerializer bytes for %d ≥ 0, but the sign-bit flip sets the top bit of every non-negative value (Encode(%d)=%x, Kafka=%x); a Java consumer would read Long.MIN_VALUE+%d", v, v, b, kafka, v)
	}
}

func TestInt64DecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantMsg string
		null    bool
	}{
		{name: "null", in: nil, null: true, wantMsg: "null"},
		{name: "empty", in: []byte{}, wantMsg: "want 8 bytes, got 0"},
		{name: "short", in: []byte{1, 2, 3, 4}, wantMsg: "want 8 bytes, got 4"},
		{name: "long", in: make([]byte, 9), wantMsg: "want 8 bytes, got 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serde.Int64.Decode(tt.in)
			requireSerdeError(t, err, "int64", "int64", "decode")
			require.Zero(t, got)
			require.ErrorContains(t, err, tt.wantMsg)
			require.Equal(t, tt.null, errors.Is(err, serde.ErrNull))
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := serde.JSON[Order]()
	tests := []struct {
		name string
		in   Order
	}{
		{"zero", Order{}},
		{"full", Order{ID: "o-1", Cents: 12000, Tags: []string{"a", "b"}}},
		{"negative and unicode", Order{ID: "ö-☕", Cents: -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.Encode(tt.in)
			require.NoError(t, err)
			require.True(t, json.Valid(b))
			got, err := s.Decode(b)
			require.NoError(t, err)
			require.Equal(t, tt.in, got)
		})
	}
	t.Run("field names from tags", func(t *testing.T) {
		b, err := s.Encode(Order{ID: "o-1", Cents: 3})
		require.NoError(t, err)
		require.JSONEq(t, `{"order_id":"o-1","cents":3,"Tags":null}`, string(b))
	})
	t.Run("unknown fields ignored", func(t *testing.T) {
		got, err := s.Decode([]byte(`{"order_id":"o-2","extra":true}`))
		require.NoError(t, err)
		require.Equal(t, Order{ID: "o-2"}, got)
	})
	t.Run("non-struct types", func(t *testing.T) {
		m := serde.JSON[map[string]int]()
		b, err := m.Encode(map[string]int{"a": 1})
		require.NoError(t, err)
		got, err := m.Decode(b)
		require.NoError(t, err)
		require.Equal(t, map[string]int{"a": 1}, got)
	})
}

func TestJSONDecodeErrors(t *testing.T) {
	s := serde.JSON[Order]()
	tests := []struct {
		name string
		in   []byte
		null bool
	}{
		{name: "null (tombstone)", in: nil, null: true},
		{name: "empty", in: []byte{}},
		{name: "malformed", in: []byte(`{"order_id":`)},
		{name: "not json", in: []byte(`hello`)},
		{name: "wrong type", in: []byte(`{"cents":"many"}`)},
		{name: "array for struct", in: []byte(`[1,2]`)},
		{name: "trailing data", in: []byte(`{"order_id":"a"} {}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Decode(tt.in)
			requireSerdeError(t, err, "json", "serde_test.Order", "decode")
			require.Equal(t, tt.null, errors.Is(err, serde.ErrNull), "only a Kafka null wraps ErrNull: %v", err)
		})
	}
}

// The JSON doc says "Decoding rejects null". A JSON null literal decodes
// into a struct as its zero value under encoding/json, so a record whose
// value is `null` would silently become an empty Order.
func TestJSONDecodeRejectsNullLiteral(t *testing.T) {
	got, err := serde.JSON[Order]().Decode([]byte("null"))
	require.Error(t, err,
		"BUG?: serde.JSON doc says decoding rejects null, but the JSON literal `null` decodes to the zero Order (%+v) with no error", got)
}

func TestJSONEncodeError(t *testing.T) {
	_, err := serde.JSON[float64]().Encode(math.NaN())
	requireSerdeError(t, err, "json", "float64", "encode")
	var uv *json.UnsupportedValueError
	require.ErrorAs(t, err, &uv, "the encoding/json cause is kept")
}

func TestFunc(t *testing.T) {
	errEnc := errors.New("cannot encode negatives")
	errDec := errors.New("bad byte")
	s := serde.Func("tiny",
		func(v int) ([]byte, error) {
			if v < 0 {
				return nil, errEnc
			}
			return []byte{byte(v)}, nil
		},
		func(b []byte) (int, error) {
			if len(b) != 1 {
				return 7, errDec // the serde must not leak this value
			}
			return int(b[0]), nil
		})

	b, err := s.Encode(42)
	require.NoError(t, err)
	require.Equal(t, []byte{42}, b)
	v, err := s.Decode(b)
	require.NoError(t, err)
	require.Equal(t, 42, v)

	tests := []struct {
		name  string
		run   func() error
		op    string
		cause error
	}{
		{"encode", func() error { _, err := s.Encode(-1); return err }, "encode", errEnc},
		{"decode", func() error {
			v, err := s.Decode([]byte{1, 2})
			require.Zero(t, v, "a failed decode returns the zero value")
			return err
		}, "decode", errDec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			requireSerdeError(t, err, "tiny", "int", tt.op)
			require.ErrorIs(t, err, tt.cause)
			require.ErrorContains(t, err, tt.cause.Error())
		})
	}
}

func TestValidated(t *testing.T) {
	errMissing := errors.New(`missing "order_id"`)
	s := serde.Validated(serde.JSON[Order](), func(o Order) error {
		if o.ID == "" {
			return errMissing
		}
		return nil
	})

	t.Run("valid round trip", func(t *testing.T) {
		b, err := s.Encode(Order{ID: "o-1", Cents: 5})
		require.NoError(t, err)
		got, err := s.Decode(b)
		require.NoError(t, err)
		require.Equal(t, Order{ID: "o-1", Cents: 5}, got)
	})
	t.Run("check error becomes decode error", func(t *testing.T) {
		got, err := s.Decode([]byte(`{"cents":5}`))
		requireSerdeError(t, err, "validated", "serde_test.Order", "decode")
		require.ErrorIs(t, err, errMissing)
		require.Zero(t, got)
	})
	t.Run("inner decode error passes through", func(t *testing.T) {
		_, err := s.Decode([]byte(`{`))
		requireSerdeError(t, err, "json", "serde_test.Order", "decode")
	})
	t.Run("inner null error passes through", func(t *testing.T) {
		_, err := s.Decode(nil)
		require.ErrorIs(t, err, serde.ErrNull)
	})
	t.Run("encode does not check", func(t *testing.T) {
		_, err := s.Encode(Order{})
		require.NoError(t, err)
	})
}
