package etcd

import (
	"testing"
)

// FuzzDecode: whatever is stored under the prefix, decode never panics,
// and what it keeps is a valid instance of the key's service and ID,
// which encodes and decodes to itself in both formats.
func FuzzDecode(f *testing.F) {
	for _, v := range []string{
		`{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"wayfinder":1,"weight":"heavy","tags":["a",1],"metadata":{"k":"v","bad key":"x"}}}`,
		`{"v":1,"id":"i","service":"s","address":"127.0.0.1:2","version":"\u0001"}`,
		`{"Addr":"h:1","Metadata":"opaque"}`, `{"Addr":null}`, `null`, `[]`, `{"v":"1"}`,
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, value string) {
		inst, _, err := decode("/p/s/", "s", []byte("/p/s/i"), []byte(value))
		if err != nil {
			return
		}
		if err := inst.Validate(); err != nil || inst.Service != "s" || inst.ID != "i" {
			t.Fatalf("decode(%q) = %+v, %v: kept an invalid instance or another's", value, inst, err)
		}
		for _, format := range []Format{FormatNaming, FormatV1} {
			b, err := encode(inst, format)
			if err != nil {
				t.Fatal(err)
			}
			back, problems, err := decode("/p/s/", "s", []byte("/p/s/i"), b)
			if err != nil || len(problems) > 0 || !back.Equal(inst) {
				t.Fatalf("decode(encode(%+v, %v)) = %+v, %v, %v", inst, format, back, problems, err)
			}
		}
	})
}
