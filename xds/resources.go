package xds

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wayfinder-rpc/wayfinder/registry"
)

// Every resource of a service is named after the service: the listener a
// client's "xds:///hello" asks for is "hello", and so are its route
// configuration (inline), its cluster and the cluster's endpoints. The
// four kinds of resource have separate name spaces.

// listener returns the API listener of service: an HTTP connection
// manager whose inline route configuration sends every call to the
// clusters (the service's own, then its canaries') by weights.
func listener(service string, clusters []string, weights []uint32, p *servicePolicy) (*listenerpb.Listener, error) {
	router, err := anypb.New(&routerpb.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmpb.HttpConnectionManager{
		RouteSpecifier: &hcmpb.HttpConnectionManager_RouteConfig{RouteConfig: routeConfig(service, clusters, weights, p.header(), p.routeAction())},
		HttpFilters: []*hcmpb.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmpb.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerpb.Listener{
		Name:        service,
		ApiListener: &listenerpb.ApiListener{ApiListener: hcm},
	}, nil
}

// routeConfig routes every call, whatever its authority, to clusters by
// weights (a cluster of weight 0 is left out; with one left, the route
// names it alone), hashing calls on hashHeader if it is not "" (for
// ring_hash), with ra's timeout and retries. With no weight above 0, it
// names clusters[0], the service's own.
func routeConfig(service string, clusters []string, weights []uint32, hashHeader string, ra *routeAction) *routepb.RouteConfiguration {
	var split []*routepb.WeightedCluster_ClusterWeight
	for i, w := range weights {
		if w > 0 {
			split = append(split, &routepb.WeightedCluster_ClusterWeight{Name: clusters[i], Weight: wrapperspb.UInt32(w)})
		}
	}
	action := &routepb.RouteAction{ClusterSpecifier: &routepb.RouteAction_Cluster{Cluster: clusters[0]}}
	switch len(split) {
	case 0:
	case 1:
		action.ClusterSpecifier = &routepb.RouteAction_Cluster{Cluster: split[0].Name}
	default:
		action.ClusterSpecifier = &routepb.RouteAction_WeightedClusters{WeightedClusters: &routepb.WeightedCluster{Clusters: split}}
	}
	if hashHeader != "" {
		action.HashPolicy = []*routepb.RouteAction_HashPolicy{{
			PolicySpecifier: &routepb.RouteAction_HashPolicy_Header_{Header: &routepb.RouteAction_HashPolicy_Header{HeaderName: hashHeader}},
		}}
	}
	ra.apply(action)
	return &routepb.RouteConfiguration{
		Name: service,
		VirtualHosts: []*routepb.VirtualHost{{
			Name:    service,
			Domains: []string{"*"},
			Routes: []*routepb.Route{{
				Match:  &routepb.RouteMatch{PathSpecifier: &routepb.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routepb.Route_Route{Route: action},
			}},
		}},
	}
}

// cluster returns a cluster of a service (name is the service, or a
// canary's "<service>/<version>"): EDS over the same ADS stream, named
// name too, round robin within localities weighted by their instances'
// weights, or the policies p names (see WithPolicy), with ROUND_ROBIN
// for clients that read only lb_policy (even under ring_hash: Python's
// grpcio 1.51 dies of a segmentation fault on a RING_HASH cluster), and
// p's outlier detection.
func cluster(name string, p *servicePolicy) *clusterpb.Cluster {
	c := &clusterpb.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterpb.Cluster_Type{Type: clusterpb.Cluster_EDS},
		EdsClusterConfig: &clusterpb.Cluster_EdsClusterConfig{
			EdsConfig: &corepb.ConfigSource{
				ConfigSourceSpecifier: &corepb.ConfigSource_Ads{Ads: &corepb.AggregatedConfigSource{}},
			},
			ServiceName: name,
		},
		LbPolicy: clusterpb.Cluster_ROUND_ROBIN,
	}
	if p != nil {
		c.LoadBalancingPolicy = p.lb
		c.OutlierDetection = p.outlier
	}
	return c
}

// loadAssignment returns the endpoints of service: one locality per
// Instance.Zone (sorted; "" is a locality of its own), each weighted by
// the sum of its instances' weights, so that a zone's share of traffic
// is its share of capacity; each endpoint carries its instance's weight
// and is HEALTHY (a registry lists the instances that should receive
// traffic). insts is the full set the registry gave; an empty set is a
// service with no instances, never an error.
func loadAssignment(service string, insts []registry.Instance) (*endpointpb.ClusterLoadAssignment, error) {
	byZone := map[string][]registry.Instance{}
	for _, inst := range insts {
		byZone[inst.Zone] = append(byZone[inst.Zone], inst)
	}
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	cla := &endpointpb.ClusterLoadAssignment{ClusterName: service}
	for _, z := range zones {
		members := slices.SortedFunc(slices.Values(byZone[z]), func(a, b registry.Instance) int { return cmp.Compare(a.ID, b.ID) })
		var total uint64
		lbs := make([]*endpointpb.LbEndpoint, 0, len(members))
		for _, inst := range members {
			addr, err := socketAddress(inst.Address)
			if err != nil {
				return nil, fmt.Errorf("instance %q: %w", inst.ID, err)
			}
			w := uint32(inst.EffectiveWeight())
			total += uint64(w)
			lbs = append(lbs, &endpointpb.LbEndpoint{
				HostIdentifier: &endpointpb.LbEndpoint_Endpoint{Endpoint: &endpointpb.Endpoint{
					Address: &corepb.Address{Address: &corepb.Address_SocketAddress{SocketAddress: addr}},
				}},
				HealthStatus:        corepb.HealthStatus_HEALTHY,
				LoadBalancingWeight: wrapperspb.UInt32(w),
			})
		}
		// gRPC clients ignore a locality of weight 0, and the sum must
		// fit in a uint32 (envoy's limit): weights are at most 1e6 each.
		total = min(max(total, 1), 1<<32-1)
		cla.Endpoints = append(cla.Endpoints, &endpointpb.LocalityLbEndpoints{
			Locality:            &corepb.Locality{Zone: z},
			LbEndpoints:         lbs,
			LoadBalancingWeight: wrapperspb.UInt32(uint32(total)),
		})
	}
	return cla, nil
}

func socketAddress(hostport string) (*corepb.SocketAddress, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("address %q: port: %w", hostport, err)
	}
	return &corepb.SocketAddress{
		Protocol:      corepb.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corepb.SocketAddress_PortValue{PortValue: uint32(p)},
	}, nil
}
