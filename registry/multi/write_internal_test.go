package multi

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// TestSlotsForgotten: the per-instance semaphores that serialise writes
// to a member live only while a write uses them, so a fleet whose
// instance IDs change with every deploy does not grow the map forever.
func TestSlotsForgotten(t *testing.T) {
	a, b := memory.New(), memory.New()
	r, err := New([]Member{{Name: "mem://a", Registry: a}}, []Member{{Name: "mem://a", Registry: a}, {Name: "mem://b", Registry: b}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst := registry.Instance{ID: fmt.Sprintf("i%d", i), Service: "hello", Address: fmt.Sprintf("127.0.0.1:%d", 1000+i)}
			for range 3 {
				if err := r.Register(ctx, inst); err != nil {
					t.Error(err)
				}
				if err := r.Deregister(ctx, inst); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, m := range r.write {
		m.slotsMu.Lock()
		n := len(m.slots)
		m.slotsMu.Unlock()
		if n != 0 {
			t.Errorf("member %s keeps %d write slots after every write finished; want 0", m.name, n)
		}
	}
}
