package harness

import (
	"context"
	"sync"
	"testing"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/memory"
)

// memSets is a SetWriter on a memory registry: a set's instances are
// registered and the instances it held before but no longer holds are
// deregistered. mu guards sets.
type memSets struct {
	r    registry.Registry
	mu   sync.Mutex
	sets map[string][]registry.Instance
}

func (m *memSets) PutSet(ctx context.Context, svc, name string, insts []registry.Instance) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for _, in := range insts {
		if err := m.r.Register(ctx, in); err != nil {
			return err
		}
		keep[in.Key()] = true
	}
	for _, in := range m.sets[svc+"/"+name] {
		if !keep[in.Key()] {
			if err := m.r.Deregister(ctx, in); err != nil {
				return err
			}
		}
	}
	m.sets[svc+"/"+name] = insts
	return nil
}

// TestSetsBackend: a backend built with NewBackend and a SetWriter runs
// the scale scenario in sets, and alone: memory's scale does not run.
func TestSetsBackend(t *testing.T) {
	store := memory.NewStore()
	writer := store.Open()
	t.Cleanup(func() { writer.Close() })
	cfg := tiny("sets")
	cfg.Scenarios = []string{"scale"}
	cfg.More = map[string]func(testing.TB) *Backend{"sets": func(testing.TB) *Backend {
		return NewBackend(BackendConfig{
			Name: "sets", Version: "test",
			Open: func(testing.TB, *Counter) (registry.Registry, error) { return store.Open(), nil },
			Sets: &memSets{r: writer, sets: map[string][]registry.Instance{}},
		})
	}}
	rep := Run(t, cfg)
	if len(rep.Failures) > 0 {
		t.Fatalf("Run: failures %+v", rep.Failures)
	}
	if got := rep.variants("scale", "memory"); len(got) != 0 {
		t.Errorf("scale ran on memory too: %+v", got)
	}
	res, ok := rep.Find("scale", "sets", "200_instances_2_sets")
	if !ok {
		t.Fatalf("no scale result 200_instances_2_sets on sets; results %+v", rep.Results)
	}
	if res.Metrics["sets"] != 2 || res.Metrics["register_p50_ms"] <= 0 {
		t.Errorf("scale on sets: metrics %v, want sets = 2 and a register_p50_ms", res.Metrics)
	}
}
