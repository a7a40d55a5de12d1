package status

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// decode reads one document as encoding/json would decode it into
// Document (field names in any case, the last of duplicate names wins,
// null leaves a field as it is or clears a pointer or slice, invalid UTF-8
// becomes U+FFFD, unknown fields are skipped), walking the tokens itself.
//
// Why not json.Unmarshal: check_worker decodes one document per process,
// and encoding/json builds its reflection-driven decoder for a type on
// first use: 0.3-0.4 ms of a ~3 ms plugin run, more than the request
// (docs/benchmarks.md). FuzzDecodeMatchesJSON holds decode to
// encoding/json's answer.
func decode(data []byte) (Document, error) {
	var d Document
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	switch dec.PeekKind() {
	case 'n':
		if _, err := dec.ReadToken(); err != nil {
			return Document{}, err
		}
	case '{':
		if err := decodeObject(dec, func(name string) error { return d.field(dec, name) }); err != nil {
			return Document{}, err
		}
	default:
		if _, err := dec.ReadValue(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Document{}, err
		}
		return Document{}, errors.New("want a JSON object")
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return Document{}, errors.New("data after the JSON object")
	}
	return d, nil
}

// decodeObject reads one object, calling field for each member name with
// the decoder at its value; field must consume the value.
func decodeObject(dec *jsontext.Decoder, field func(name string) error) error {
	if _, err := dec.ReadToken(); err != nil { // '{'
		return err
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if err := field(tok.String()); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken() // '}', or the syntax error in its place
	return err
}

// field decodes the value of the member name into d; names match in any
// case (strings.EqualFold), as encoding/json matches them.
func (d *Document) field(dec *jsontext.Decoder, name string) error {
	switch {
	case strings.EqualFold(name, "status"):
		return decodeString(dec, &d.Status)
	case strings.EqualFold(name, "message"):
		return decodeString(dec, &d.Message)
	case strings.EqualFold(name, "heartbeat"):
		return decodeTime(dec, &d.Heartbeat)
	case strings.EqualFold(name, "started_at"):
		return decodeTime(dec, &d.StartedAt)
	case strings.EqualFold(name, "version"):
		return decodeString(dec, &d.Version)
	case strings.EqualFold(name, "checks"):
		return decodeArray(dec, &d.Checks, func(c *Check) error {
			if dec.PeekKind() == 'n' {
				_, err := dec.ReadToken()
				return err
			}
			if dec.PeekKind() != '{' {
				return typeError(dec, "a check")
			}
			return decodeObject(dec, func(name string) error { return c.field(dec, name) })
		})
	case strings.EqualFold(name, "metrics"):
		return decodeArray(dec, &d.Metrics, func(m *Metric) error {
			var v Metric // whole or not at all, as Metric.UnmarshalJSON
			err := v.decode(dec)
			if err == nil {
				*m = v
			}
			return err
		})
	}
	return dec.SkipValue()
}

func (c *Check) field(dec *jsontext.Decoder, name string) error {
	switch {
	case strings.EqualFold(name, "name"):
		return decodeString(dec, &c.Name)
	case strings.EqualFold(name, "status"):
		return decodeString(dec, &c.Status)
	case strings.EqualFold(name, "message"):
		return decodeString(dec, &c.Message)
	case strings.EqualFold(name, "scope"):
		return decodeString(dec, &c.Scope)
	}
	return dec.SkipValue()
}

// decode reads one metric as Metric.UnmarshalJSON does: "value" is
// required and may not be null.
func (m *Metric) decode(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		if err != nil {
			return err
		}
		return errors.New("metric \"\" has no \"value\"")
	}
	if dec.PeekKind() != '{' {
		return typeError(dec, "a metric")
	}
	var value *float64
	err := decodeObject(dec, func(name string) error {
		switch {
		case strings.EqualFold(name, "name"):
			return decodeString(dec, &m.Name)
		case strings.EqualFold(name, "value"):
			return decodeNumber(dec, &value)
		case strings.EqualFold(name, "uom"):
			return decodeString(dec, &m.UOM)
		case strings.EqualFold(name, "min"):
			return decodeNumber(dec, &m.Min)
		case strings.EqualFold(name, "max"):
			return decodeNumber(dec, &m.Max)
		}
		return dec.SkipValue()
	})
	if err != nil {
		return err
	}
	if value == nil {
		return fmt.Errorf("metric %q has no \"value\"", clip(m.Name))
	}
	m.Value = *value
	return nil
}

// decodeArray reads null (dst becomes nil) or an array. As encoding/json
// does, an array that replaces an earlier one of the same name (a
// duplicate member) is decoded into that one's elements.
func decodeArray[T any](dec *jsontext.Decoder, dst *[]T, elem func(*T) error) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		*dst = nil
		return err
	case '[':
	default:
		return typeError(dec, "an array")
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	out := (*dst)[:0]
	if out == nil {
		out = make([]T, 0)
	}
	for dec.PeekKind() != ']' {
		if len(out) < cap(out) {
			out = out[:len(out)+1]
		} else {
			var zero T
			out = append(out, zero)
		}
		if err := elem(&out[len(out)-1]); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*dst = out
	return nil
}

// decodeString: a string, or null, which leaves dst as it is.
func decodeString(dec *jsontext.Decoder, dst *string) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		return err
	case '"':
		tok, err := dec.ReadToken()
		if err == nil {
			*dst = tok.String()
		}
		return err
	}
	return typeError(dec, "a string")
}

// decodeNumber: a number that fits a float64, or null, which clears dst.
func decodeNumber(dec *jsontext.Decoder, dst **float64) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		*dst = nil
		return err
	case '0':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		v, err := strconv.ParseFloat(tok.String(), 64)
		if err != nil {
			return fmt.Errorf("number %s does not fit a float64", clip(tok.String()))
		}
		*dst = &v
		return nil
	}
	return typeError(dec, "a number")
}

// decodeTime: null clears dst; a string is read as encoding/json reads
// it for a time.Time (unescaped, then time.Time's own RFC 3339 rule).
func decodeTime(dec *jsontext.Decoder, dst **time.Time) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		*dst = nil
		return err
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		var t time.Time
		if err := t.UnmarshalJSON([]byte(`"` + tok.String() + `"`)); err != nil {
			return err
		}
		*dst = &t
		return nil
	}
	return typeError(dec, "a time string")
}

// typeError consumes the value of the wrong type (a syntax error in it
// wins) and says what was wanted.
func typeError(dec *jsontext.Decoder, want string) error {
	k := dec.PeekKind()
	if err := dec.SkipValue(); err != nil {
		return err
	}
	return fmt.Errorf("at %s: want %s, got %s", dec.StackPointer(), want, kindName(k))
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "nothing"
}
