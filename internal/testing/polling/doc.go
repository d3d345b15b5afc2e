// Package polling is the baseline the benchmarks compare Wayfinder's
// watches with: a registry.Discovery whose Watch asks the registry again
// at a fixed interval, as the 2019 seed's resolver did every 500 ms,
// whatever happened. The resolver's propagation benchmark and the
// benchmark harness (benchmark/internal/harness) share it, so both
// measure the same baseline.
package polling
