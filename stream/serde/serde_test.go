package serde_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

var int64Cases = []struct {
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

// kafkaLong is what Kafka's LongSerializer writes: big-endian two's
// complement.
func kafkaLong(v int64) []byte {
	return []byte{
		byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32),
		byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v),
	}
}

func TestInt64RoundTrip(t *testing.T) {
	serdes := []struct {
		name  string
		s     serde.Serde[int64]
		kafka bool // byte-compatible with Kafka's LongSerializer
	}{
		{"Int64", serde.Int64, true},
		{"OrderedInt64", serde.OrderedInt64, false},
	}
	for _, sd := range serdes {
		for _, tt := range int64Cases {
			t.Run(sd.name+"/"+tt.name, func(t *testing.T) {
				b, err := sd.s.Encode(tt.in)
				require.NoError(t, err)
				require.Len(t, b, 8)
				if sd.kafka {
					require.Equal(t, kafkaLong(tt.in), b, "Int64 must be byte-compatible with Kafka's LongSerializer")
				} else {
					require.NotEqual(t, kafkaLong(tt.in), b, "OrderedInt64 flips the sign bit")
				}
				got, err := sd.s.Decode(b)
				require.NoError(t, err)
				require.Equal(t, tt.in, got)
			})
		}
	}
}

// requireByteOrderIsNumericOrder checks that encoding the sorted values
// gives sorted byte strings.
func requireByteOrderIsNumericOrder(t *testing.T, s serde.Serde[int64], values []int64) {
	t.Helper()
	require.True(t, slices.IsSorted(values))
	encoded := make([][]byte, len(values))
	for i, v := range values {
		b, err := s.Encode(v)
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

var (
	nonNegative = []int64{0, 1, 2, 255, 256, 65536, 1 << 40, math.MaxInt64 - 1, math.MaxInt64}
	negative    = []int64{math.MinInt64, math.MinInt64 + 1, -1 << 40, -65536, -256, -255, -2, -1}
)

func TestInt64ByteOrder(t *testing.T) {
	t.Run("Int64 orders non-negative values", func(t *testing.T) {
		requireByteOrderIsNumericOrder(t, serde.Int64, nonNegative)
	})
	t.Run("Int64 orders negative values among themselves", func(t *testing.T) {
		requireByteOrderIsNumericOrder(t, serde.Int64, negative)
	})
	t.Run("Int64 sorts negative values after non-negative ones", func(t *testing.T) {
		minus, _ := serde.Int64.Encode(-1)
		zero, _ := serde.Int64.Encode(0)
		require.Equal(t, 1, bytes.Compare(minus, zero), "two's complement: why OrderedInt64 exists")
	})
	t.Run("OrderedInt64 orders every value", func(t *testing.T) {
		requireByteOrderIsNumericOrder(t, serde.OrderedInt64, slices.Concat(negative, nonNegative))
	})
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
	for _, sd := range []struct {
		name string
		s    serde.Serde[int64]
	}{{"int64", serde.Int64}, {"ordered-int64", serde.OrderedInt64}} {
		for _, tt := range tests {
			t.Run(sd.name+"/"+tt.name, func(t *testing.T) {
				got, err := sd.s.Decode(tt.in)
				requireSerdeError(t, err, sd.name, "int64", "decode")
				require.Zero(t, got)
				require.ErrorContains(t, err, tt.wantMsg)
				require.Equal(t, tt.null, errors.Is(err, serde.ErrNull))
			})
		}
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

// A JSON null literal would decode into a struct as its zero value; the
// serde rejects it unless T can be nil.
func TestJSONNullLiteral(t *testing.T) {
	for _, in := range []string{"null", " null\n"} {
		_, err := serde.JSON[Order]().Decode([]byte(in))
		requireSerdeError(t, err, "json", "serde_test.Order", "decode")
		require.ErrorIs(t, err, serde.ErrNull, "%q", in)

		_, err = serde.JSON[int64]().Decode([]byte(in))
		require.ErrorIs(t, err, serde.ErrNull, "%q into int64", in)
	}
	t.Run("nilable types decode null to nil", func(t *testing.T) {
		p, err := serde.JSON[*Order]().Decode([]byte("null"))
		require.NoError(t, err)
		require.Nil(t, p)
		m, err := serde.JSON[map[string]int]().Decode([]byte("null"))
		require.NoError(t, err)
		require.Nil(t, m)
		sl, err := serde.JSON[[]int]().Decode([]byte("null"))
		require.NoError(t, err)
		require.Nil(t, sl)
	})
	t.Run("a Kafka null is an error even for nilable types", func(t *testing.T) {
		_, err := serde.JSON[*Order]().Decode(nil)
		requireSerdeError(t, err, "json", "*serde_test.Order", "decode")
		require.ErrorIs(t, err, serde.ErrNull)
	})
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

// AppendEncode appends exactly what Encode returns, after what dst holds.
func TestAppendEncodeMatchesEncode(t *testing.T) {
	prefix := []byte("pre")
	check := func(name string, enc func(dst []byte) ([]byte, error), want []byte) {
		t.Helper()
		got, err := enc(append([]byte(nil), prefix...))
		require.NoError(t, err, name)
		require.Equal(t, append(append([]byte(nil), prefix...), want...), got, name)
	}
	for _, v := range []string{"", "k1", "ünïcode"} {
		want, err := serde.String.Encode(v)
		require.NoError(t, err)
		check("string "+v, func(dst []byte) ([]byte, error) {
			return serde.String.(serde.Appender[string]).AppendEncode(dst, v)
		}, want)
	}
	for _, s := range []serde.Serde[int64]{serde.Int64, serde.OrderedInt64} {
		for _, v := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64} {
			want, err := s.Encode(v)
			require.NoError(t, err)
			check(fmt.Sprint(v), func(dst []byte) ([]byte, error) {
				return s.(serde.Appender[int64]).AppendEncode(dst, v)
			}, want)
		}
	}
}

// Int64 and OrderedInt64 read a key's text as a decimal; a text that is
// not one is an *Error naming the serde.
func TestInt64ParseText(t *testing.T) {
	for _, s := range []serde.Serde[int64]{serde.Int64, serde.OrderedInt64} {
		p, ok := s.(serde.TextParser[int64])
		require.True(t, ok)
		v, err := p.ParseText("-42")
		require.NoError(t, err)
		require.Equal(t, int64(-42), v)
		_, err = p.ParseText("4x")
		var se *serde.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, "parse", se.Op)
	}
	_, ok := serde.String.(serde.TextParser[string])
	require.False(t, ok, "a string's text is its bytes: Decode reads it")
}
