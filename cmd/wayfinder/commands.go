package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wayfinder-rpc/wayfinder/examples/helloworld/faultdemo"
	"github.com/wayfinder-rpc/wayfinder/registry"
	_ "github.com/wayfinder-rpc/wayfinder/registry/consul" // consul:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/etcd"   // etcd:// URLs
	_ "github.com/wayfinder-rpc/wayfinder/registry/memory" // mem:// URLs
)

func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and printed once by run
	return fs
}

func parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, usageError(err.Error())
	}
	if fs.NArg() != positional {
		return nil, usageError(fmt.Sprintf("want %d argument(s), got %d", positional, fs.NArg()))
	}
	return fs.Args(), nil
}

// openTarget opens the registry of a "<registry-url>/<service>" target.
func openTarget(ctx context.Context, raw string) (registry.Registry, string, error) {
	t, err := registry.ParseTarget(raw)
	if err != nil {
		return nil, "", err
	}
	reg, err := registry.OpenURL(ctx, t.Registry)
	if err != nil {
		return nil, "", err
	}
	return reg, t.Service, nil
}

func cmdServices(ctx context.Context, args []string, out io.Writer) error {
	pos, err := parse(flags("services"), args, 1)
	if err != nil {
		return err
	}
	reg, err := registry.Open(ctx, pos[0])
	if err != nil {
		return err
	}
	defer reg.Close()
	lister, ok := reg.(registry.ServiceLister)
	if !ok {
		return fmt.Errorf("the %s backend cannot list services", strings.SplitN(pos[0], ":", 2)[0])
	}
	names, err := lister.Services(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES")
	for _, n := range names {
		insts, err := reg.Lookup(ctx, n)
		count := fmt.Sprint(len(insts))
		if err != nil {
			count = "error: " + err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\n", n, count)
	}
	return tw.Flush()
}

// jsonInstance is the stable JSON form of an instance for scripts.
type jsonInstance struct {
	ID       string            `json:"id"`
	Service  string            `json:"service"`
	Address  string            `json:"address"`
	Version  string            `json:"version,omitempty"`
	Zone     string            `json:"zone,omitempty"`
	Weight   int               `json:"weight"`
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func toJSON(insts []registry.Instance) []jsonInstance {
	out := make([]jsonInstance, len(insts))
	for i, in := range insts {
		out[i] = jsonInstance{in.ID, in.Service, in.Address, in.Version, in.Zone, in.EffectiveWeight(), in.Tags, in.Metadata}
	}
	return out
}

func writeTable(out io.Writer, insts []registry.Instance) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tVERSION\tZONE\tWEIGHT\tTAGS\tMETADATA")
	for _, in := range insts {
		var md []string
		for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
			md = append(md, k+"="+in.Metadata[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", in.ID, in.Address, dash(in.Version), dash(in.Zone),
			in.EffectiveWeight(), dash(strings.Join(in.Tags, ",")), dash(strings.Join(md, ",")))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdInstances(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("instances")
	format := fs.String("o", "table", "output format: table or json")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return usageError(fmt.Sprintf("-o %q: want table or json", *format))
	}
	reg, svc, err := openTarget(ctx, pos[0])
	if err != nil {
		return err
	}
	defer reg.Close()
	insts, err := reg.Lookup(ctx, svc)
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(toJSON(insts))
	}
	return writeTable(out, insts)
}

func cmdWatch(ctx context.Context, args []string, out io.Writer) error {
	pos, err := parse(flags("watch"), args, 1)
	if err != nil {
		return err
	}
	reg, svc, err := openTarget(ctx, pos[0])
	if err != nil {
		return err
	}
	defer reg.Close()
	w, err := reg.Watch(ctx, svc)
	if err != nil {
		return err
	}
	defer w.Close()
	return watchLoop(ctx, w, svc, out, time.Now)
}

// watchLoop prints each change as a diff against the previous set, with
// the time since the watch started and since the previous event.
func watchLoop(ctx context.Context, w registry.Watcher, svc string, out io.Writer, now func() time.Time) error {
	start := now()
	last := start
	var prev map[string]registry.Instance
	for {
		insts, err := w.Next(ctx)
		t := now()
		stamp := fmt.Sprintf("[%8.3fs +%7.3fs]", t.Sub(start).Seconds(), t.Sub(last).Seconds())
		last = t
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return nil
			}
			fmt.Fprintf(out, "%s error (last set kept): %v\n", stamp, err)
			continue
		}
		cur := map[string]registry.Instance{}
		for _, in := range insts {
			cur[in.ID] = in
		}
		if prev == nil {
			fmt.Fprintf(out, "%s %s: %d instance(s)\n", stamp, svc, len(insts))
			for _, in := range insts {
				fmt.Fprintf(out, "    = %s\n", describe(in))
			}
		} else {
			fmt.Fprintf(out, "%s %s: %d instance(s)\n", stamp, svc, len(insts))
			for _, id := range slices.Sorted(maps.Keys(prev)) {
				if _, ok := cur[id]; !ok {
					fmt.Fprintf(out, "    - %s\n", describe(prev[id]))
				}
			}
			for _, in := range insts {
				old, ok := prev[in.ID]
				switch {
				case !ok:
					fmt.Fprintf(out, "    + %s\n", describe(in))
				case !old.Equal(in):
					fmt.Fprintf(out, "    ~ %s\n", describe(in))
				}
			}
		}
		prev = cur
	}
}

func describe(in registry.Instance) string {
	s := fmt.Sprintf("%s %s weight=%d", in.ID, in.Address, in.EffectiveWeight())
	if in.Version != "" {
		s += " version=" + in.Version
	}
	if in.Zone != "" {
		s += " zone=" + in.Zone
	}
	if len(in.Tags) > 0 {
		s += " tags=" + strings.Join(in.Tags, ",")
	}
	return s
}

func cmdRegister(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("register")
	addr := fs.String("addr", "", "address clients dial (host:port); required")
	id := fs.String("id", "", "instance ID (default: random)")
	version := fs.String("version", "", "version")
	zone := fs.String("zone", "", "zone")
	weight := fs.Int("weight", 0, "weight (0: default)")
	tags := fs.String("tags", "", "comma-separated tags")
	meta := fs.String("meta", "", "comma-separated key=value metadata")
	once := fs.Bool("once", false, "register and exit, without deregistering (backends with leases or TTL checks expire it)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	reg, svc, err := openTarget(ctx, pos[0])
	if err != nil {
		return err
	}
	defer reg.Close()
	inst := registry.Instance{ID: *id, Service: svc, Address: *addr, Version: *version, Zone: *zone, Weight: *weight}
	if inst.ID == "" {
		inst.ID = svc + "-" + registry.NewID()[:12]
	}
	if *tags != "" {
		inst.Tags = strings.Split(*tags, ",")
	}
	if *meta != "" {
		inst.Metadata = map[string]string{}
		for _, kv := range strings.Split(*meta, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageError(fmt.Sprintf("-meta %q: want key=value", kv))
			}
			inst.Metadata[k] = v
		}
	}
	if err := inst.Validate(); err != nil {
		return err
	}
	if err := reg.Register(ctx, inst); err != nil {
		return err
	}
	fmt.Fprintf(out, "registered %s\n", describe(inst))
	if *once {
		return nil
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Deregister(dctx, inst); err != nil {
		return err
	}
	fmt.Fprintf(out, "deregistered %s\n", inst.ID)
	return nil
}

func cmdDeregister(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("deregister")
	id := fs.String("id", "", "instance ID; required")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *id == "" {
		return usageError("-id is required")
	}
	reg, svc, err := openTarget(ctx, pos[0])
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := reg.Deregister(ctx, registry.Instance{ID: *id, Service: svc}); err != nil {
		return err
	}
	fmt.Fprintf(out, "deregistered %s/%s\n", svc, *id)
	return nil
}

func cmdDemo(ctx context.Context, args []string, out io.Writer) error {
	c := faultdemo.DefaultConfig()
	fs := flags("demo")
	faultdemo.RegisterFlags(fs, &c)
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	ok, err := faultdemo.Run(ctx, c, out)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the demo saw failed calls")
	}
	return nil
}
