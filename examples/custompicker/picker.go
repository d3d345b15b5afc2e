package main

import (
	"math/rand/v2"

	"github.com/wayfinder-rpc/wayfinder/balancer/custom"
)

// This file is all the balancing code a user writes: a choice among the
// ready endpoints, registered under a policy name.
var localZone = "eu-1a"

func init() {
	// Prefer endpoints in the local zone; use the others only when the
	// local zone has none ready. The function runs on every call, so it
	// does not allocate: it draws a random index among the matches.
	custom.Register("prefer_local_zone", func(_ custom.Call, ready []custom.Endpoint) (int, error) {
		local := 0
		for _, e := range ready {
			if e.Instance.Zone == localZone {
				local++
			}
		}
		if local == 0 {
			return rand.IntN(len(ready)), nil
		}
		n := rand.IntN(local)
		for i, e := range ready {
			if e.Instance.Zone == localZone {
				if n == 0 {
					return i, nil
				}
				n--
			}
		}
		return 0, nil // unreachable
	})
}
