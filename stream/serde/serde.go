// Package serde turns typed keys and values into Kafka bytes and back.
//
// A [Serde] is passed positionally wherever a topology touches a topic:
//
//	orders := stream.From(b, "orders", serde.String, serde.JSON[Order]())
//
// There are no default serdes and no registry: the type of every key and
// value is visible in the code that reads or writes it.
//
// # Null
//
// Kafka distinguishes a null key or value from an empty one. Decode receives
// nil for null. The built-in serdes map null to the zero value where that is
// unambiguous (String, Bytes) and report an error where it is not (Int64,
// JSON), so that a tombstone is never silently read as a real value.
//
// # Concurrency
//
// All serdes in this package are stateless and safe for concurrent use.
// User serdes must be too: one serde value is shared by every task.
package serde

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// Serde encodes values of type T to bytes and decodes them back.
//
// Encode may return a slice that aliases its input (Bytes does); callers must
// not modify it. Decode may retain data (Bytes does); the runtime never
// reuses a record's bytes after handing them to Decode.
type Serde[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(data []byte) (T, error)
}

// Appender is a Serde that can encode by appending to a buffer:
// AppendEncode appends to dst what Encode returns, and returns the
// extended buffer. The runtime uses it to encode outputs and store keys
// into memory it reuses, sparing an allocation per record. String, Int64
// and OrderedInt64 implement it; a serde that does not is called through
// Encode. An appended encoding is never a Kafka null: a serde that encodes
// some values as null (nil) must not implement Appender.
type Appender[T any] interface {
	AppendEncode(dst []byte, v T) ([]byte, error)
}

// TextParser is a Serde whose values can also be written as text, for
// keys typed by people: an interactive query's URL carries its key as
// text (docs/operations.md, "Interactive queries"). ParseText returns
// the value text stands for. Int64 and OrderedInt64 implement it (decimal
// integers); a serde that does not is given the text's bytes to Decode,
// which reads them as they are for String and Bytes, and as JSON for
// JSON.
type TextParser[T any] interface {
	ParseText(text string) (T, error)
}

// Error is returned by every serde in this package when encoding or decoding
// fails. It names the serde, the Go type and the operation.
type Error struct {
	Serde string // "json", "int64", ... or the name given to Func
	Type  string // the Go type, e.g. "main.Order"
	Op    string // "encode", "decode" or "parse" (TextParser)
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("serde: %s %s %s: %v", e.Serde, e.Op, e.Type, e.Err)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrNull is wrapped by decode errors of serdes that cannot represent a
// Kafka null (a tombstone).
var ErrNull = errors.New("null (tombstone) where a value is required")

func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}

// String is UTF-8 text, byte-compatible with Kafka's StringSerde. A null
// decodes to "". The bytes are not validated as UTF-8.
var String Serde[string] = stringSerde{}

type stringSerde struct{}

func (stringSerde) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (stringSerde) AppendEncode(dst []byte, v string) ([]byte, error) {
	return append(dst, v...), nil
}
func (stringSerde) Decode(b []byte) (string, error) { return string(b), nil }

// Bytes passes bytes through unchanged, without copying: Encode returns its
// argument and Decode returns the record's own slice. A null stays nil.
var Bytes Serde[[]byte] = bytesSerde{}

type bytesSerde struct{}

func (bytesSerde) Encode(v []byte) ([]byte, error) { return v, nil }
func (bytesSerde) Decode(b []byte) ([]byte, error) { return b, nil }

// Int64 is an 8-byte big-endian two's-complement integer, byte-compatible
// with Kafka's LongSerializer. For values ≥ 0 the byte order equals the
// numeric order; use OrderedInt64 for store keys that may be negative. A
// null or a length other than 8 is a decode error.
var Int64 Serde[int64] = int64Serde{name: "int64"}

// OrderedInt64 is Int64 with the sign bit flipped, so that the byte order of
// every value, negative ones included, equals its numeric order: for keys
// scanned in ranges. It is not compatible with Kafka's LongSerializer.
var OrderedInt64 Serde[int64] = int64Serde{name: "ordered-int64", flip: 1 << 63}

type int64Serde struct {
	name string
	flip uint64
}

func (s int64Serde) Encode(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)^s.flip), nil
}

func (s int64Serde) AppendEncode(dst []byte, v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(v)^s.flip), nil
}

// ParseText implements TextParser: a decimal integer.
func (s int64Serde) ParseText(text string) (int64, error) {
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, &Error{Serde: s.name, Type: "int64", Op: "parse", Err: err}
	}
	return v, nil
}

func (s int64Serde) Decode(b []byte) (int64, error) {
	if b == nil {
		return 0, &Error{Serde: s.name, Type: "int64", Op: "decode", Err: ErrNull}
	}
	if len(b) != 8 {
		return 0, &Error{Serde: s.name, Type: "int64", Op: "decode",
			Err: fmt.Errorf("want 8 bytes, got %d", len(b))}
	}
	return int64(binary.BigEndian.Uint64(b) ^ s.flip), nil
}

// JSON returns a serde that encodes T with encoding/json. Decoding rejects
// a Kafka null, the JSON literal null unless T can be nil (pointer, map,
// slice, interface), and trailing data after the value; unknown fields are
// ignored as encoding/json does. Add checks for required fields with
// [Validated].
func JSON[T any]() Serde[T] {
	var nilable bool
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		nilable = true
	}
	return jsonSerde[T]{typ: typeName[T](), nilable: nilable}
}

type jsonSerde[T any] struct {
	typ     string
	nilable bool
}

func (s jsonSerde[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &Error{Serde: "json", Type: s.typ, Op: "encode", Err: err}
	}
	return b, nil
}

func (s jsonSerde[T]) Decode(b []byte) (T, error) {
	var v T
	if b == nil || (!s.nilable && string(bytes.TrimSpace(b)) == "null") {
		return v, &Error{Serde: "json", Type: s.typ, Op: "decode", Err: ErrNull}
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, &Error{Serde: "json", Type: s.typ, Op: "decode", Err: err}
	}
	return v, nil
}

// Func builds a serde from two functions; name appears in its errors. Errors
// returned by encode or decode are wrapped in an [*Error].
func Func[T any](name string, encode func(T) ([]byte, error), decode func([]byte) (T, error)) Serde[T] {
	return funcSerde[T]{name: name, typ: typeName[T](), enc: encode, dec: decode}
}

type funcSerde[T any] struct {
	name, typ string
	enc       func(T) ([]byte, error)
	dec       func([]byte) (T, error)
}

func (s funcSerde[T]) Encode(v T) ([]byte, error) {
	b, err := s.enc(v)
	if err != nil {
		return nil, &Error{Serde: s.name, Type: s.typ, Op: "encode", Err: err}
	}
	return b, nil
}

func (s funcSerde[T]) Decode(b []byte) (T, error) {
	v, err := s.dec(b)
	if err != nil {
		var zero T
		return zero, &Error{Serde: s.name, Type: s.typ, Op: "decode", Err: err}
	}
	return v, nil
}

// Validated wraps inner so that every decoded value must also pass check;
// a check error becomes a decode error. Use it to reject records that parse
// but lack a required field:
//
//	serde.Validated(serde.JSON[Order](), func(o Order) error {
//		if o.ID == "" { return errors.New(`missing "order_id"`) }
//		return nil
//	})
func Validated[T any](inner Serde[T], check func(T) error) Serde[T] {
	return validated[T]{inner: inner, check: check, typ: typeName[T]()}
}

type validated[T any] struct {
	inner Serde[T]
	check func(T) error
	typ   string
}

func (s validated[T]) Encode(v T) ([]byte, error) { return s.inner.Encode(v) }

func (s validated[T]) Decode(b []byte) (T, error) {
	v, err := s.inner.Decode(b)
	if err != nil {
		return v, err
	}
	if err := s.check(v); err != nil {
		var zero T
		return zero, &Error{Serde: "validated", Type: s.typ, Op: "decode", Err: err}
	}
	return v, nil
}
