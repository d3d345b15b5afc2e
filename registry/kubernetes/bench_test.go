package kubernetes_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/wayfinder-rpc/wayfinder/internal/testing/testenv"
	"github.com/wayfinder-rpc/wayfinder/registry"
)

// BenchmarkLargeServiceSliceChange: one Service with 5,000 endpoints
// across 50 slices of 100; each iteration rewrites one slice (one
// endpoint replaced) and measures until a watcher's Next returns the
// new set, the API server's write included. It also reports the heap a
// watcher of that Service holds.
//
//	cd registry/kubernetes && go test -run '^$' -bench LargeService -benchtime 20x .
func BenchmarkLargeServiceSliceChange(b *testing.B) {
	const slices, per = 50, 100
	a := newAdmin(b)
	const svc = "large"
	a.createService(b, svc)
	content := make([][]endpoint, slices)
	for i := range slices {
		for j := range per {
			content[i] = append(content[i], endpoint{addr: fmt.Sprintf("10.%d.%d.%d", 100+i/200, i%200, j+1)})
		}
		a.putSlice(b, svc, slice(fmt.Sprintf("large-%02d", i), discoveryv1.AddressTypeIPv4, 50051, content[i]...))
	}
	r := newReg(b, testenv.KubeAdminToken)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w, err := r.Watch(ctxT(b, 10*time.Second), svc)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ctx := ctxT(b, 5*time.Minute)
	for {
		got, err := w.Next(ctx)
		if err != nil {
			b.Fatalf("Next = %v", err)
		}
		if len(got) == slices*per {
			break
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	b.ResetTimer()
	for n := range b.N {
		i := n % slices
		content[i][0].addr = fmt.Sprintf("10.%d.%d.%d", 150+n/250, n%250, 200)
		want := content[i][0].addr + ":50051"
		a.putSlice(b, svc, slice(fmt.Sprintf("large-%02d", i), discoveryv1.AddressTypeIPv4, 50051, content[i]...))
		for {
			got, err := w.Next(ctx)
			if err != nil {
				b.Fatalf("Next = %v", err)
			}
			if len(got) == slices*per && containsAddr(got, want) {
				break
			}
		}
	}
	b.ReportMetric(heap, "MiB/watch") // after ResetTimer, which drops metrics
}

func containsAddr(in []registry.Instance, addr string) bool {
	for _, i := range in {
		if i.Address == addr {
			return true
		}
	}
	return false
}
