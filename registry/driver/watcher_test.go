package driver_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/driver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func inst(id, addr string) registry.Instance {
	return registry.Instance{ID: id, Service: "s", Address: addr}
}

func ids(insts []registry.Instance) []string {
	out := []string{}
	for _, i := range insts {
		out = append(out, i.ID+"@"+i.Address)
	}
	return out
}

var errDown = errors.New("down")

// step is one thing done to a watcher: feed it, or call Next, which must
// return want (the IDs@addresses) or an error, or block.
type step struct {
	set   []registry.Instance
	index string
	fail  error

	next      bool
	want      []string // for a set
	wantErr   error    // for an error
	wantBlock bool     // Next must still be waiting after the steps so far
	wantIndex string

	problems []string // "ID Field: Reason" of the reporter's FieldProblems("s"), checked if not nil
}

func problemStrings(ps []registry.FieldProblem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.ID+" "+p.Field)
	}
	return out
}

func TestContract(t *testing.T) {
	a, b, c := inst("a", "127.0.0.1:1"), inst("b", "127.0.0.1:2"), inst("c", "127.0.0.1:3")
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first set at once, sorted", []step{
			{set: []registry.Instance{b, a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1", "b@127.0.0.1:2"}, wantIndex: "1", problems: []string{}},
		}},
		{"empty first set is a set", []step{
			{set: nil, index: "1"},
			{next: true, want: []string{}},
		}},
		{"first error at once", []step{
			{fail: errDown},
			{next: true, wantErr: errDown},
		}},
		{"nothing fed blocks", []step{
			{next: true, wantBlock: true},
		}},
		{"unchanged set is skipped", []step{
			{set: []registry.Instance{a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{set: []registry.Instance{a}, index: "2"},
			{next: true, wantBlock: true, wantIndex: "1"},
		}},
		{"changed set, latest wins", []step{
			{set: []registry.Instance{a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{set: []registry.Instance{a, b}, index: "2"},
			{set: []registry.Instance{a, b, c}, index: "3"},
			{next: true, want: []string{"a@127.0.0.1:1", "b@127.0.0.1:2", "c@127.0.0.1:3"}, wantIndex: "3"},
		}},
		{"one error per outage, latest text", []step{
			{set: []registry.Instance{a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{fail: errors.New("first")},
			{fail: errDown},
			{next: true, wantErr: errDown, wantIndex: "1"},
			{fail: errors.New("third")},
			{next: true, wantBlock: true},
		}},
		{"error is never an empty set; recovery re-sends unchanged set", []step{
			{set: []registry.Instance{a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{fail: errDown},
			{next: true, wantErr: errDown},
			{set: []registry.Instance{a}, index: "5"},
			{next: true, want: []string{"a@127.0.0.1:1"}, wantIndex: "5"},
		}},
		{"a set fed before an outage comes before its error", []step{
			{set: []registry.Instance{a}, index: "1"},
			{fail: errDown},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{next: true, wantErr: errDown},
		}},
		{"an outage over before Next still shows", []step{
			{set: []registry.Instance{a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{fail: errDown},
			{set: []registry.Instance{a}, index: "2"},
			{next: true, wantErr: errDown},
			{next: true, want: []string{"a@127.0.0.1:1"}, wantIndex: "2"},
		}},
		{"a second outage is a second error", []step{
			{fail: errDown},
			{next: true, wantErr: errDown},
			{set: []registry.Instance{a}},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{fail: errDown},
			{next: true, wantErr: errDown},
		}},
		{"an instance with a bad address is dropped and reported, the rest fed", []step{
			{set: []registry.Instance{a, inst("bad", "no-port"), c}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1", "c@127.0.0.1:3"}, wantIndex: "1", problems: []string{"bad Address"}},
		}},
		{"an instance with a bad optional field is kept with its default and reported", []step{
			{set: []registry.Instance{a, {ID: "w", Service: "s", Address: "127.0.0.1:9", Weight: -1, Tags: []string{"ok", ""}}}},
			{next: true, want: []string{"a@127.0.0.1:1", "w@127.0.0.1:9"}, problems: []string{"w Tags", "w Weight"}},
		}},
		{"only invalid instances: an empty set, not an error", []step{
			{set: []registry.Instance{inst("", "127.0.0.1:1"), {ID: "x", Service: "", Address: "127.0.0.1:1"}}},
			{next: true, want: []string{}, problems: []string{" ID", "x Service"}},
		}},
		{"an invalid instance added to an unchanged set is no update", []step{
			{set: []registry.Instance{a}, index: "1"},
			{next: true, want: []string{"a@127.0.0.1:1"}},
			{set: []registry.Instance{a, inst("bad", "")}, index: "2"},
			{next: true, wantBlock: true, wantIndex: "1", problems: []string{"bad Address"}},
		}},
		{"one instance per ID, the first fed wins", []step{
			{set: []registry.Instance{b, inst("a", "10.0.0.1:1"), inst("a", "10.0.0.2:1")}},
			{next: true, want: []string{"a@10.0.0.1:1", "b@127.0.0.1:2"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reports := driver.NewFieldReporter("test", slog.New(slog.DiscardHandler))
			w := driver.NewWatcher("test", "s", nil, driver.ReportTo(reports))
			defer w.Close()
			for i, st := range tc.steps {
				switch {
				case st.fail != nil:
					w.Fail(st.fail)
				case !st.next:
					w.Set(st.set, st.index)
				case st.wantBlock:
					ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
					got, err := w.Next(ctx)
					cancel()
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("step %d: Next() = %v, %v; want to block", i, ids(got), err)
					}
				default:
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					got, err := w.Next(ctx)
					cancel()
					if st.wantErr != nil {
						if !errors.Is(err, st.wantErr) || got != nil {
							t.Fatalf("step %d: Next() = %v, %v; want nil, %v", i, ids(got), err, st.wantErr)
						}
					} else if err != nil || !slices.Equal(ids(got), st.want) {
						t.Fatalf("step %d: Next() = %v, %v; want %v", i, ids(got), err, st.want)
					}
				}
				if got := problemStrings(reports.FieldProblems("s")); st.problems != nil && !slices.Equal(got, st.problems) {
					t.Fatalf("step %d: FieldProblems(%q) = %q, want %q", i, "s", got, st.problems)
				}
				if st.next && st.wantIndex != "" {
					if got := w.Index(); got != st.wantIndex {
						t.Fatalf("step %d: Index() = %q, want %q", i, got, st.wantIndex)
					}
				}
			}
		})
	}
}

func TestNextReturnsCopies(t *testing.T) {
	w := driver.NewWatcher("test", "s", nil)
	defer w.Close()
	in := registry.Instance{ID: "a", Service: "s", Address: "127.0.0.1:1", Metadata: map[string]string{"k": "v"}}
	w.Set([]registry.Instance{in}, "")
	got, _ := w.Next(t.Context())
	got[0].Metadata["k"] = "changed"
	w.Fail(errDown)
	w.Next(t.Context())
	w.Set([]registry.Instance{in}, "")
	again, _ := w.Next(t.Context())
	if again[0].Metadata["k"] != "v" {
		t.Fatalf("a change to what Next returned reached the watcher: Metadata = %v", again[0].Metadata)
	}
}

func TestCloseUnblocksNextAndStopsOnce(t *testing.T) {
	var stops int
	var mu sync.Mutex
	w := driver.NewWatcher("test", "s", func() { mu.Lock(); stops++; mu.Unlock() })
	errc := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background())
		errc <- err
	}()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { w.Close() })
	}
	wg.Wait()
	if err := <-errc; !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Next() blocked in Close = %v, want ErrClosed", err)
	}
	if _, err := w.Next(context.Background()); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Next() after Close = %v, want ErrClosed", err)
	}
	if stops != 1 {
		t.Fatalf("stop ran %d times, want 1", stops)
	}
}

func TestWatchersCloseAll(t *testing.T) {
	var ws driver.Watchers
	w := driver.NewWatcher("test", "s", nil)
	if !ws.Add(w) {
		t.Fatal("Add() = false before CloseAll")
	}
	ws.CloseAll()
	if _, err := w.Next(context.Background()); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Next() after CloseAll = %v, want ErrClosed", err)
	}
	late := driver.NewWatcher("test", "s", nil)
	if ws.Add(late) {
		t.Fatal("Add() after CloseAll = true, want false")
	}
	if _, err := late.Next(context.Background()); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Next() of a watcher added after CloseAll = %v, want ErrClosed", err)
	}
}

// A set fed to many watchers is shared, not copied, and not reordered
// once sorted; the race detector checks that no watcher writes to it.
func TestSharedSnapshot(t *testing.T) {
	set := []registry.Instance{inst("a", "127.0.0.1:1"), inst("b", "127.0.0.1:2")}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			w := driver.NewWatcher("test", "s", nil, driver.SharedSets())
			defer w.Close()
			w.Set(set, "")
			got, err := w.Next(context.Background())
			if err != nil || &got[0] != &set[0] {
				t.Errorf("Next() with SharedSets = a copy or %v; want the fed slice", err)
			}
		})
	}
	wg.Wait()
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		in   []registry.Instance
		want []string
	}{
		{nil, []string{}},
		{[]registry.Instance{inst("b", "x:1"), inst("a", "x:2")}, []string{"a@x:2", "b@x:1"}},
		{[]registry.Instance{inst("a", "dc1:1"), inst("b", "x:1"), inst("a", "dc2:1")}, []string{"a@dc1:1", "b@x:1"}},
	} {
		if got := driver.Normalize(slices.Clone(tc.in)); !slices.Equal(ids(got), tc.want) {
			t.Errorf("Normalize(%v) = %v, want %v", ids(tc.in), ids(got), tc.want)
		}
	}
}
