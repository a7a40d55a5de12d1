package status

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
)

// viaJSON is how Parse decoded before decode: encoding/json into
// Document, then nothing but white space.
func viaJSON(data []byte) (Document, error) {
	var d Document
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return Document{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return Document{}, io.ErrUnexpectedEOF
	}
	return d, nil
}

func sameAsJSON(t *testing.T, data []byte) {
	t.Helper()
	got, gotErr := decode(data)
	want, wantErr := viaJSON(data)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%q: decode error %v, encoding/json error %v", data, gotErr, wantErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\ndecode        %#v\nencoding/json %#v", data, got, want)
	}
}

var decodeSeeds = []string{
	full,
	`{"status":"ok"}`,
	`{"STATUS":"ok","Message":"m","VERSION":"1"}`,
	`{"ſtatus":"ok","\u212aey":1}`,
	`{"status":"ok","status":"critical"}`,
	`{"status":"ok","status":null}`,
	`{"status":"ok","heartbeat":null,"started_at":"2026-11-24T09:00:00Z"}`,
	`{"status":"ok","heartbeat":"2026-11-24T09:00:00.123+01:00","heartbeat":null}`,
	`{"status":"ok","heartbeat":"2026-11-24 09:00:00Z"}`,
	`{"status":"ok","heartbeat":"\u0032026-11-24T09:00:00Z"}`,
	`{"status":"ok","heartbeat":5}`,
	`{"status":"ok","checks":[]}`,
	`{"status":"ok","checks":null}`,
	`{"status":"ok","checks":[null,{"name":"a","status":"ok","scope":"self","x":[1,{"y":2}]}]}`,
	`{"status":"ok","checks":[{"name":"a","status":"ok","message":"m"}],"checks":[{"name":"b"}]}`,
	`{"status":"ok","checks":{}}`,
	`{"status":"ok","checks":[5]}`,
	`{"status":"ok","metrics":[{"name":"q","value":-1.5e3,"min":0,"max":null,"uom":"ms"}]}`,
	`{"status":"ok","metrics":[{"name":"q","value":1,"value":null}]}`,
	`{"status":"ok","metrics":[{"name":"q","value":null,"value":2}]}`,
	`{"status":"ok","metrics":[null]}`,
	`{"status":"ok","metrics":[{"name":"q","value":"1"}]}`,
	`{"status":"ok","metrics":[{"name":"q","value":1e999}]}`,
	`{"status":"ok","metrics":[{"name":"q","value":1,"min":true}]}`,
	`{"status":"ok","metrics":[1]}`,
	`{"status":"ok","metrics":[{"name":"q","value":1}],"metrics":[{"name":"r","value":2}]}`,
	"{\"status\":\"ok\xff\xfe\",\"message\":\"a\\ud800b\"}",
	`{"status":"ok"}  `,
	`{"status":"ok"} {}`,
	`{"status":"ok"} x`,
	`{"status":"ok"}}`,
	`{"status":"ok",}`,
	`{"status":"ok"`,
	`null`, ``, ` `, `[]`, `"ok"`, `5`, `true`, `{}`, `{"status":0}`, `{"status":["ok"]}`,
	`{"status":"ok","extra":{"a":[1,2,{"b":null}]},"more":"x"}`,
}

func TestDecodeMatchesJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		sameAsJSON(t, []byte(s))
	}
}

// FuzzDecodeMatchesJSON: for any input, decode and encoding/json agree on
// whether it is a document and, when it is, on every field.
func FuzzDecodeMatchesJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsJSON(t, data) })
}
