package wire

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The codec is built from struct tags, once per type (see the package
// comment for the rules). A plan lists a struct's wire fields; a coder says
// how one value of a field's type is written, read, compared and tested for
// zero. Both are immutable once built and shared by every goroutine.

type plan struct {
	fields   []field
	required uint64 // bits of the fields that must be present
	min      int    // fewest bytes an encoding of the struct can take
	// lenient plans skip unknown keys instead of refusing them (Hello,
	// whose keys a later version may add to).
	lenient bool
}

type field struct {
	name  string // the map key
	index []int  // path to the field (two steps for a flattened embedded struct)
	omit  bool   // omitempty: left out when zero, optional when decoding
	bit   uint64
	c     *coder
}

type coderKind uint8

const (
	kindUint coderKind = iota
	kindBool
	kindString
	kindBytes
	kindStruct
	kindPtr
	kindSlice
)

type coder struct {
	kind  coderKind
	typ   reflect.Type
	bits  int    // kindUint: width of the field
	valid bool   // the type has a Valid() bool method, checked on decode
	elem  *coder // kindPtr and kindSlice: the element
	plan  *plan  // kindStruct
	// min is the fewest bytes the decoder accepts as an encoding of a
	// value of this type.
	min int
	// cost is what an element of a slice must be held to take in the
	// input: at least min bytes, and at least an eighth of its size in
	// memory. Array lengths are checked against it, so an array never
	// allocates more than eight bytes per byte of input left.
	cost int
}

// maxExpansion bounds the memory an array may allocate per byte of input.
const maxExpansion = 8

// lenientKeys is implemented by types whose decoding skips unknown keys.
type lenientKeys interface{ lenientKeys() }

var lenientType = reflect.TypeFor[lenientKeys]()

// validator is implemented by enums; an unknown value is bad input.
type validator interface{ Valid() bool }

var validatorType = reflect.TypeFor[validator]()

var (
	plansMu sync.Mutex
	plans   sync.Map // reflect.Type of *T -> *plan
	coders  = map[reflect.Type]*coder{}
)

// planOf returns the plan of the struct v points to.
func planOf(v any) *plan {
	t := reflect.TypeOf(v)
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("wire: %T is not a pointer to a struct", v))
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	p := coderOf(t.Elem()).plan
	plans.Store(t, p)
	return p
}

func structValue(v any) reflect.Value {
	rv := reflect.ValueOf(v)
	if rv.IsNil() {
		panic(fmt.Sprintf("wire: nil %T", v))
	}
	return rv.Elem()
}

// coderOf builds the coder of t. plansMu is held.
func coderOf(t reflect.Type) *coder {
	if c, ok := coders[t]; ok {
		if c == nil {
			panic(fmt.Sprintf("wire: %v refers to itself", t))
		}
		return c
	}
	coders[t] = nil // in progress
	c := &coder{typ: t, valid: t.Implements(validatorType), min: 1}
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.kind, c.bits = kindUint, t.Bits()
	case reflect.Bool:
		c.kind = kindBool
	case reflect.String:
		c.kind = kindString
	case reflect.Slice:
		switch t.Elem().Kind() {
		case reflect.Uint8:
			c.kind = kindBytes
		case reflect.Struct:
			c.kind, c.elem = kindSlice, coderOf(t.Elem())
			c.cost = max(c.elem.min, (int(t.Elem().Size())+maxExpansion-1)/maxExpansion)
		default:
			panic(fmt.Sprintf("wire: unsupported slice type %v", t))
		}
	case reflect.Pointer:
		if t.Elem().Kind() != reflect.Struct {
			panic(fmt.Sprintf("wire: unsupported pointer type %v", t))
		}
		c.kind, c.elem = kindPtr, coderOf(t.Elem())
	case reflect.Struct:
		c.kind, c.plan = kindStruct, buildPlan(t)
		c.plan.lenient = t.Implements(lenientType)
		c.min = c.plan.min
	default:
		panic(fmt.Sprintf("wire: unsupported type %v", t))
	}
	coders[t] = c
	return c
}

func buildPlan(t reflect.Type) *plan {
	p := &plan{min: 1} // the map header
	var add func(t reflect.Type, index []int)
	add = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag, hasTag := sf.Tag.Lookup("msgpack")
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int{}, index...), i)
			switch {
			case tag == "-":
				continue
			case sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct:
				add(sf.Type, idx)
				continue
			case !sf.IsExported() || !hasTag || name == "":
				panic(fmt.Sprintf("wire: field %v.%s needs a msgpack tag with a name", t, sf.Name))
			case len(name) > maxKey:
				panic(fmt.Sprintf("wire: key %q of %v.%s is longer than %d bytes", name, t, sf.Name, maxKey))
			case len(p.fields) == 64:
				panic(fmt.Sprintf("wire: %v has more than 64 fields", t))
			}
			for _, f := range p.fields {
				if f.name == name {
					panic(fmt.Sprintf("wire: key %q used twice in %v", name, t))
				}
			}
			f := field{name: name, index: idx, omit: opts == "omitempty", bit: 1 << len(p.fields), c: coderOf(sf.Type)}
			if opts != "" && opts != "omitempty" {
				panic(fmt.Sprintf("wire: unknown tag option %q on %v.%s", opts, t, sf.Name))
			}
			if !f.omit {
				p.required |= f.bit
				p.min += 1 + len(name) + f.c.min
			}
			p.fields = append(p.fields, f)
		}
	}
	add(t, nil)
	return p
}

// emptyBytes makes every empty byte string encode alike, nil or not.
var emptyBytes = []byte{}

func (p *plan) encode(e *msgpack.Encoder, v reflect.Value) {
	n := 0
	for i := range p.fields {
		f := &p.fields[i]
		if !f.omit || !f.c.isZero(v.FieldByIndex(f.index)) {
			n++
		}
	}
	// NB: the encoder's writer never fails (see encoder), so neither do
	// these calls; their errors are nil.
	_ = e.EncodeMapLen(n)
	for i := range p.fields {
		f := &p.fields[i]
		fv := v.FieldByIndex(f.index)
		if f.omit && f.c.isZero(fv) {
			continue
		}
		_ = e.EncodeString(f.name)
		f.c.encode(e, fv)
	}
}

func (c *coder) encode(e *msgpack.Encoder, v reflect.Value) {
	switch c.kind {
	case kindUint:
		_ = e.EncodeUint(v.Uint())
	case kindBool:
		_ = e.EncodeBool(v.Bool())
	case kindString:
		_ = e.EncodeString(v.String())
	case kindBytes:
		b := v.Bytes()
		if len(b) == 0 {
			b = emptyBytes
		}
		_ = e.EncodeBytes(b)
	case kindStruct:
		c.plan.encode(e, v)
	case kindPtr:
		if v.IsNil() {
			_ = e.EncodeNil()
			return
		}
		c.elem.encode(e, v.Elem())
	case kindSlice:
		_ = e.EncodeArrayLen(v.Len())
		for i := range v.Len() {
			c.elem.encode(e, v.Index(i))
		}
	}
}

func (c *coder) isZero(v reflect.Value) bool {
	switch c.kind {
	case kindBytes, kindSlice, kindString:
		return v.Len() == 0
	case kindPtr:
		return v.IsNil()
	}
	return v.IsZero()
}

// same reports whether a and b are sure to encode alike: equal scalars, and
// slices and pointers that are the very same memory. It never looks inside
// a slice, so it costs the same for a one-byte value and a megabyte.
func (c *coder) same(a, b reflect.Value) bool {
	switch c.kind {
	case kindUint:
		return a.Uint() == b.Uint()
	case kindBool:
		return a.Bool() == b.Bool()
	case kindString:
		return a.String() == b.String()
	case kindBytes, kindSlice:
		return a.Len() == b.Len() && (a.Len() == 0 || a.UnsafePointer() == b.UnsafePointer())
	case kindPtr:
		return a.UnsafePointer() == b.UnsafePointer()
	}
	return c.plan.same(a, b)
}

func (p *plan) same(a, b reflect.Value) bool {
	for i := range p.fields {
		f := &p.fields[i]
		if !f.c.same(a.FieldByIndex(f.index), b.FieldByIndex(f.index)) {
			return false
		}
	}
	return true
}

// Same reports whether *a and *b, of the same struct type, are sure to encode
// to the same bytes: every wire field is equal, and every slice or pointer in
// them is the same memory. Fields off the wire are not compared. It may say
// false for values that do encode alike; it never says true for values that
// do not.
func Same(a, b any) bool {
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	return planOf(a).same(structValue(a), structValue(b))
}

// decoder reads one frame body with bounds checks. The msgpack decoder reads
// straight from the bytes.Reader (it needs no buffering of its own), so
// r.Len() is exactly what is left of the body.
type decoder struct {
	r    bytes.Reader
	d    *msgpack.Decoder
	body []byte       // what r reads, for peeking at the next byte
	kb   [maxKey]byte // see key
}

// maxKey bounds a map key.
const maxKey = 8

func newDecoder() *decoder {
	x := &decoder{}
	x.d = msgpack.NewDecoder(&x.r)
	return x
}

func (x *decoder) left() int { return x.r.Len() }

func (p *plan) decode(x *decoder, v reflect.Value) error {
	if err := x.expect("a map", isMap); err != nil {
		return err
	}
	n, err := x.d.DecodeMapLen()
	if err != nil {
		return err
	}
	// Every entry takes at least two bytes.
	if n > x.left()/2 {
		return fmt.Errorf("%w: map of %d entries in %d bytes", ErrBadFrame, n, x.left())
	}
	var seen uint64
	for range n {
		k, err := x.key()
		if err != nil {
			return err
		}
		f := p.lookup(k)
		if f == nil && p.lenient {
			if err := x.skipScalar(); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			continue
		}
		if f == nil {
			return fmt.Errorf("%w: unknown key %q", ErrBadFrame, k)
		}
		if seen&f.bit != 0 {
			return fmt.Errorf("%w: repeated key %q", ErrBadFrame, k)
		}
		seen |= f.bit
		if err := f.c.decode(x, v.FieldByIndex(f.index)); err != nil {
			return fmt.Errorf("key %q: %w", f.name, err)
		}
	}
	if missing := p.required &^ seen; missing != 0 {
		var names []string
		for _, f := range p.fields {
			if missing&f.bit != 0 {
				names = append(names, f.name)
			}
		}
		return fmt.Errorf("%w: missing keys %q", ErrBadFrame, names)
	}
	return nil
}

func (p *plan) lookup(k []byte) *field {
	for i := range p.fields {
		if p.fields[i].name == string(k) {
			return &p.fields[i]
		}
	}
	return nil
}

// key reads a map key into x.kb (a buffer handed to the msgpack reader
// escapes, so it lives as long as the decoder) and returns it.
func (x *decoder) key() ([]byte, error) {
	n, err := x.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > len(x.kb) {
		return nil, fmt.Errorf("%w: bad key length %d", ErrBadFrame, n)
	}
	if err := x.d.ReadFull(x.kb[:n]); err != nil {
		return nil, err
	}
	return x.kb[:n], nil
}

func (c *coder) decode(x *decoder, v reflect.Value) error {
	switch c.kind {
	case kindUint:
		if err := x.expect("an unsigned integer", isUint); err != nil {
			return err
		}
		u, err := x.d.DecodeUint64()
		if err != nil {
			return err
		}
		if c.bits < 64 && u>>c.bits != 0 {
			return fmt.Errorf("%w: %d does not fit %d bits", ErrBadFrame, u, c.bits)
		}
		v.SetUint(u)
		if c.valid && !v.Interface().(validator).Valid() {
			return fmt.Errorf("%w: unknown %v %d", ErrBadFrame, c.typ, u)
		}
	case kindBool:
		if err := x.expect("a bool", isBool); err != nil {
			return err
		}
		b, err := x.d.DecodeBool()
		if err != nil {
			return err
		}
		v.SetBool(b)
	case kindString:
		b, err := x.bytes()
		if err != nil {
			return err
		}
		v.SetString(string(b))
	case kindBytes:
		b, err := x.bytes()
		if err != nil {
			return err
		}
		v.SetBytes(b)
	case kindStruct:
		return c.plan.decode(x, v)
	case kindPtr:
		if code, err := x.d.PeekCode(); err == nil && code == msgpcode.Nil {
			return x.d.DecodeNil()
		}
		p := reflect.New(c.typ.Elem())
		if err := c.elem.decode(x, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
	case kindSlice:
		if err := x.expect("an array", isArray); err != nil {
			return err
		}
		n, err := x.d.DecodeArrayLen()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n > x.left()/c.cost {
			return fmt.Errorf("%w: array of %d elements in %d bytes", ErrBadFrame, n, x.left())
		}
		s := reflect.MakeSlice(c.typ, n, n)
		for i := range n {
			if err := c.elem.decode(x, s.Index(i)); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		v.Set(s)
	}
	return nil
}

// expect refuses the next value unless its first byte is of the kind the
// field needs: msgpack's own decoders also take nil, and negative numbers
// for unsigned ones, and the decoder is strict.
func (x *decoder) expect(what string, ok func(byte) bool) error {
	if x.r.Len() == 0 {
		return io.ErrUnexpectedEOF
	}
	c := x.body[len(x.body)-x.r.Len()]
	if !ok(c) {
		return fmt.Errorf("%w: %s expected, found %#x", ErrBadFrame, what, c)
	}
	return nil
}

// skipScalar skips a value of a key the decoder does not know: a number,
// bool, nil or string, whose length is checked against what is left. (The
// msgpack decoder's own Skip allocates what a length declares.)
func (x *decoder) skipScalar() error {
	c, err := x.d.PeekCode()
	if err != nil {
		return err
	}
	var n int
	switch {
	case c <= msgpcode.PosFixedNumHigh || c >= msgpcode.NegFixedNumLow, c == msgpcode.Nil, isBool(c):
		n = 1
	case c == msgpcode.Uint8 || c == msgpcode.Int8:
		n = 2
	case c == msgpcode.Uint16 || c == msgpcode.Int16:
		n = 3
	case c == msgpcode.Uint32 || c == msgpcode.Int32 || c == msgpcode.Float:
		n = 5
	case c == msgpcode.Uint64 || c == msgpcode.Int64 || c == msgpcode.Double:
		n = 9
	case isBytes(c):
		l, err := x.d.DecodeBytesLen()
		if err != nil {
			return err
		}
		if l > x.left() {
			return fmt.Errorf("%w: string of %d bytes, %d left in frame", ErrBadFrame, l, x.left())
		}
		_, err = x.r.Seek(int64(l), io.SeekCurrent)
		return err
	default:
		return fmt.Errorf("%w: a key this version does not know holds a value other than a number or string (%#x)", ErrBadFrame, c)
	}
	if n > x.left() {
		return fmt.Errorf("%w: truncated value", ErrBadFrame)
	}
	_, err = x.r.Seek(int64(n), io.SeekCurrent)
	return err
}

func isUint(c byte) bool {
	return c <= msgpcode.PosFixedNumHigh || (c >= msgpcode.Uint8 && c <= msgpcode.Uint64)
}
func isBool(c byte) bool  { return c == msgpcode.True || c == msgpcode.False }
func isBytes(c byte) bool { return msgpcode.IsString(c) || msgpcode.IsBin(c) }
func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}
func isMap(c byte) bool { return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 }

// bytes reads a byte or text string. An empty one decodes as nil.
// The result is a new allocation of exactly its length.
func (x *decoder) bytes() ([]byte, error) {
	if err := x.expect("a string", isBytes); err != nil {
		return nil, err
	}
	n, err := x.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if n > x.left() {
		return nil, fmt.Errorf("%w: string of %d bytes, %d left in frame", ErrBadFrame, n, x.left())
	}
	b := make([]byte, n)
	if err := x.d.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}
