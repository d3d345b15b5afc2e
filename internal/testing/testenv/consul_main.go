package testenv

import "github.com/wayfinder-rpc/wayfinder/internal/testing/standalone"

// MainTB lets TestMain use the helpers, to share one server among all of
// a package's tests: the zero MainTB is ready, Fatalf panics (failing the
// test binary), and Cleanup functions run, last first, at Close.
type MainTB = standalone.TB
