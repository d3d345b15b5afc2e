// Package orcaweight turns ORCA load reports (gRFC A51) into endpoint
// weights for Wayfinder's policies, blended with the registry weight.
//
// # Formula
//
// For endpoint i with registry weight r_i, from its latest report:
//
//	u_i   = the named utilisation Config.Metric if set, else
//	        application_utilization if > 0, else cpu_utilization
//	qps_i = rps_fractional if > 0, else the rate of this client's calls
//	        to the endpoint over the last update period
//	c_i   = qps_i / (u_i + penalty × eps_i / qps_i)    (gRFC A58)
//	w_i   = r_i × c_i / mean(c)
//
// c_i estimates the endpoint's capacity, calls per unit of utilisation;
// mean(c) is over the endpoints whose c is usable, and an endpoint with
// no usable c gets the mean (w_i = r_i). When no endpoint has one, the
// weights are the registry weights. So the registry weight scales the
// share an endpoint gets by its capacity: at equilibrium endpoints run
// at utilisations in proportion to their registry weights.
//
// A c_i is usable once the endpoint has reported for BlackoutPeriod
// without a gap of WeightExpirationPeriod, and until its last report is
// WeightExpirationPeriod old (then it falls back to the mean, and the
// blackout applies again to new reports). Reports with no utilisation
// are ignored. Weights are recomputed every WeightUpdatePeriod by a
// goroutine the balancer owns, never on the pick path; a call's Done only
// stores its report (four atomic stores, no clock read): a report's time
// is that of the first update that sees it, at most one period late.
package orcaweight
