package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/registry/multi" // multi:// URLs, and Diff
)

// exitError ends a command with its own exit status: diff's 1 for
// "differ", 2 for trouble. err, if any, is printed as run prints errors.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

// cmdDiff compares two registries, or one service in two registries:
// exit status 0 when they hold the same, 1 when they differ, 2 on error.
func cmdDiff(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("diff")
	format := fs.String("o", "table", "output format: table or json")
	timeout := timeoutFlag(fs, "how long to wait for both registries' answers (the whole command)")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return usageError(fmt.Sprintf("-o %q: want table or json", *format))
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := diffRegistries(ctx, pos[0], pos[1], *timeout)
	if err != nil {
		return exitError{2, err}
	}
	if *format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(struct {
			Equal bool `json:"equal"`
			multi.Report
		}{rep.Equal(), rep})
	} else {
		err = writeDiff(out, rep)
	}
	switch {
	case err != nil:
		return exitError{2, err}
	case !rep.Equal():
		return exitError{1, nil}
	}
	return nil
}

// diffRegistries opens both registries and compares them: every service
// for registry URLs, one service for targets.
func diffRegistries(ctx context.Context, oldRaw, newRaw string, timeout time.Duration) (multi.Report, error) {
	var svcs [2]string
	var regs [2]registry.Registry
	var urls [2]*url.URL
	for i, raw := range []string{oldRaw, newRaw} {
		u, _ := url.Parse(raw)
		if u != nil && strings.Trim(u.Path, "/") != "" {
			t, err := registry.ParseTarget(raw)
			if err != nil {
				return multi.Report{}, explain(nil, err, timeout)
			}
			svcs[i], u = t.Service, t.Registry
		}
		urls[i] = u
		var err error
		if u == nil {
			_, err = registry.Open(ctx, raw) // its parse error, redacted
		} else {
			regs[i], err = registry.OpenURL(ctx, u)
		}
		if err != nil {
			return multi.Report{}, explain(u, err, timeout)
		}
		defer regs[i].Close()
	}
	if svcs[0] != svcs[1] {
		return multi.Report{}, usageError(fmt.Sprintf("compare two registries (consul://a:8500 etcd://b:2379) or one service in both (consul://a:8500/hello etcd://b:2379/hello); got services %q and %q", svcs[0], svcs[1]))
	}
	var services []string
	if svcs[0] != "" {
		services = []string{svcs[0]}
	}
	rep, err := multi.Diff(ctx, regs[0], regs[1], services...)
	var se *multi.SideError
	if errors.As(err, &se) {
		u := urls[0]
		if se.Side == "new" {
			u = urls[1]
		}
		return multi.Report{}, explain(u, fmt.Errorf("%s registry: %w", se.Side, se.Err), timeout)
	}
	if err != nil {
		return multi.Report{}, err
	}
	return rep, nil
}

// writeDiff prints a report: one line per differing instance, then a
// summary.
func writeDiff(out io.Writer, rep multi.Report) error {
	var onlyOld, onlyNew, differ int
	if len(rep.Differences) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tSERVICE\tID\tDIFFERENCE")
		for _, d := range rep.Differences {
			switch d.Kind {
			case multi.OnlyOld:
				onlyOld++
				fmt.Fprintf(tw, "-\t%s\t%s\tonly in old (%s)\n", d.Service, d.ID, d.Address)
			case multi.OnlyNew:
				onlyNew++
				fmt.Fprintf(tw, "+\t%s\t%s\tonly in new (%s)\n", d.Service, d.ID, d.Address)
			default:
				differ++
				var fs []string
				for _, f := range d.Fields {
					fs = append(fs, fmt.Sprintf("%s %q -> %q", f.Field, f.Old, f.New))
				}
				fmt.Fprintf(tw, "~\t%s\t%s\t%s\n", d.Service, d.ID, strings.Join(fs, "; "))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rep.Equal() {
		_, err := fmt.Fprintf(out, "equal: %d services, %d instances\n", rep.Services, rep.Instances)
		return err
	}
	_, err := fmt.Fprintf(out, "differ: %d services, %d instances: %d only in old, %d only in new, %d differ\n",
		rep.Services, rep.Instances, onlyOld, onlyNew, differ)
	return err
}
