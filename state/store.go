package state

import "fmt"

// Codec turns keys or values into bytes and back. stream/serde's Serde
// satisfies it; state declares its own so that it depends on nothing above
// it.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(data []byte) (T, error)
}

// Changelog receives the changelog record of every store write, for the
// runtime to produce inside the open transaction. A nil value is a
// tombstone (a delete). The key is only valid during the call (stores
// encode keys into a buffer they reuse): copy it to keep it. The value is
// never modified and may be kept.
type Changelog interface {
	Append(topic string, key, value []byte)
}

// appender is a codec that can encode by appending to a buffer, as
// stream/serde.Appender: store keys are then encoded with no allocation.
type appender[T any] interface {
	AppendEncode(dst []byte, v T) ([]byte, error)
}

// KeyValue is a typed key-value store of one task: a key range of the
// task's DB, changelogged to one topic. Reads see the open transaction's
// own writes. Keys are ordered by their encoded bytes: use a serde whose
// byte order is the order you want to range over (stream/serde.String,
// serde.OrderedInt64).
//
// A KeyValue is used by its task's goroutine only.
type KeyValue[K, V any] struct {
	db        *DB
	prefix    []byte
	changelog string
	log       Changelog
	ks        Codec[K]
	ka        appender[K] // ks, if it is one
	vs        Codec[V]
	// buf holds the DB key of the last encoded key; encodes counts the
	// encodings, so that Update knows whether f reused buf.
	buf     []byte
	encodes uint64
}

// NewKeyValue returns the store called name inside db, whose writes are
// also appended to log for the changelog topic. A nil log writes no
// changelog: for stores whose changelog is their source topic. Store names must be unique
// within a DB and stable: the on-disk key prefix is derived from the name.
func NewKeyValue[K, V any](db *DB, name, changelogTopic string, log Changelog, ks Codec[K], vs Codec[V]) (*KeyValue[K, V], error) {
	if name == "" || len(name) > 255 {
		return nil, fmt.Errorf("state: store name %q must have 1 to 255 bytes", name)
	}
	ka, _ := ks.(appender[K])
	return &KeyValue[K, V]{
		db: db, prefix: StorePrefix(name), changelog: changelogTopic, log: log, ks: ks, ka: ka, vs: vs,
	}, nil
}

// StorePrefix returns the key prefix of a store: its name's length, then
// the name. It never starts with 0, which the DB's own keys use.
func StorePrefix(name string) []byte {
	return append([]byte{byte(len(name))}, name...)
}

// key encodes k and returns its DB key (the store's prefix, then k
// encoded) and the encoded k, both in a buffer reused by the next call.
func (s *KeyValue[K, V]) key(k K) (dbKey, kb []byte, err error) {
	s.encodes++
	s.buf = append(s.buf[:0], s.prefix...)
	if s.ka != nil {
		s.buf, err = s.ka.AppendEncode(s.buf, k)
	} else {
		var b []byte
		if b, err = s.ks.Encode(k); err == nil {
			s.buf = append(s.buf, b...)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state: %s: encode key: %w", s.name(), err)
	}
	return s.buf, s.buf[len(s.prefix):], nil
}

// Get returns the value of k and whether it exists, as of the open
// transaction's writes. It fails if k or the value cannot be encoded or
// decoded, or as DB.Get.
func (s *KeyValue[K, V]) Get(k K) (V, bool, error) {
	var zero V
	key, _, err := s.key(k)
	if err != nil {
		return zero, false, err
	}
	vb, ok, err := s.db.Get(key)
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := s.vs.Decode(vb)
	if err != nil {
		return zero, false, fmt.Errorf("state: %s: decode value: %w", s.name(), err)
	}
	return v, true, nil
}

// Put sets k to v and appends the change to the changelog. It fails if k
// or v cannot be encoded, or as DB.Delete; a failed Put changes nothing.
func (s *KeyValue[K, V]) Put(k K, v V) error {
	vb, err := s.value(v)
	if err != nil {
		return err
	}
	key, kb, err := s.key(k)
	if err != nil {
		return err
	}
	// vb is the changelog record's value too: neither copy is modified,
	// so the DB keeps it without copying.
	if err := s.db.write(key, vb); err != nil {
		return err
	}
	s.logWrite(kb, vb)
	return nil
}

// value encodes v for the DB and the changelog: never nil, which is the
// changelog's tombstone.
func (s *KeyValue[K, V]) value(v V) ([]byte, error) {
	vb, err := s.vs.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("state: %s: encode value: %w", s.name(), err)
	}
	if vb == nil {
		vb = []byte{}
	}
	return vb, nil
}

// logWrite appends the changelog record of a write of kb (vb nil: a
// delete), unless the store has no changelog.
func (s *KeyValue[K, V]) logWrite(kb, vb []byte) {
	if s.log != nil {
		s.log.Append(s.changelog, kb, vb)
	}
}

// Update sets k to f(old, found), where old is k's value (the zero value
// when found is false), appends the change to the changelog, and returns
// the new value: a read-modify-write such as an aggregate's, with one
// lookup and one key encoding where Get and Put take two. An error from f
// leaves the store unchanged and is returned as is. f may use the store
// and the task's others; if it writes k itself, Update's write replaces
// that one.
func (s *KeyValue[K, V]) Update(k K, f func(old V, found bool) (V, error)) (V, error) {
	var zero V
	key, kb, err := s.key(k)
	if err != nil {
		return zero, err
	}
	drops, encodes := s.db.drops, s.encodes
	e, err := s.db.entry(key)
	if err != nil {
		return zero, err
	}
	var old V
	found := e.value != nil
	if found {
		if old, err = s.vs.Decode(e.value); err != nil {
			return zero, fmt.Errorf("state: %s: decode value: %w", s.name(), err)
		}
	}
	v, err := f(old, found)
	if err != nil {
		return zero, err
	}
	vb, err := s.value(v)
	if err != nil {
		return zero, err
	}
	if s.encodes != encodes {
		// f used the store: s.buf holds its keys by now.
		if key, kb, err = s.key(k); err != nil {
			return zero, err
		}
	}
	if s.db.drops != drops {
		// f's reads made room in the DB's entries, maybe by dropping e:
		// look it up again.
		if e, err = s.db.entry(key); err != nil {
			return zero, err
		}
	}
	s.db.set(e, vb)
	s.logWrite(kb, vb)
	return v, nil
}

// Delete removes k and appends a tombstone to the changelog. It fails as
// Put.
func (s *KeyValue[K, V]) Delete(k K) error {
	key, kb, err := s.key(k)
	if err != nil {
		return err
	}
	if err := s.db.Delete(key); err != nil {
		return err
	}
	s.logWrite(kb, nil)
	return nil
}

func (s *KeyValue[K, V]) name() string { return string(s.prefix[1:]) }

// KeyCodec returns the store's key codec.
func (s *KeyValue[K, V]) KeyCodec() Codec[K] { return s.ks }

// ValueCodec returns the store's value codec.
func (s *KeyValue[K, V]) ValueCodec() Codec[V] { return s.vs }
