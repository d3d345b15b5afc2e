package xds

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	adminpb "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statuspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// typeStatus is what one stream was sent of one resource type and what
// its client said about it. Guarded by Server.mu.
type typeStatus struct {
	sentVersion, sentNonce string
	sentAt                 time.Time
	ackedVersion           string // the version the client last accepted
	nacked                 bool   // the client rejected the last response
	nackErr                string
	nackAt                 time.Time
}

// ClientStatus is what the server knows of one client's stream, for
// debug pages and CSDS.
type ClientStatus struct {
	Node  string       // the client's node ID
	Delta bool         // a Delta stream, else State of the World
	Types []TypeStatus // by type URL, sorted
}

// TypeStatus is one resource type of a ClientStatus.
type TypeStatus struct {
	TypeURL string
	Names   []string // the resource names the client asks for, sorted
	Sent    string   // the version last sent, "" if none
	Acked   string   // the version last accepted, "" if none
	NACK    string   // the client's error if it rejected the last response
}

// Clients returns the status of every open stream, by node ID.
func (s *Server) Clients() []ClientStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ClientStatus, 0, len(s.streams))
	for k, st := range s.streams {
		cs := ClientStatus{Node: st.node, Delta: k.delta}
		for typ, names := range st.names {
			ts := TypeStatus{TypeURL: typ, Names: slices.Sorted(maps.Keys(names))}
			if t := st.status[typ]; t != nil {
				ts.Sent, ts.Acked = t.sentVersion, t.ackedVersion
				if t.nacked {
					ts.NACK = t.nackErr
				}
			}
			cs.Types = append(cs.Types, ts)
		}
		slices.SortFunc(cs.Types, func(a, b TypeStatus) int { return cmp.Compare(a.TypeURL, b.TypeURL) })
		out = append(out, cs)
	}
	slices.SortFunc(out, func(a, b ClientStatus) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// streamLocked returns stream k's record, made on first use. Callers
// hold s.mu.
func (s *Server) streamLocked(k streamKey) *stream {
	st := s.streams[k]
	if st == nil {
		st = &stream{names: map[string]map[string]bool{}, services: map[string]bool{}, status: map[string]*typeStatus{}}
		s.streams[k] = st
	}
	return st
}

// sent records a response sent on stream k.
func (s *Server) sent(k streamKey, typeURL, version, nonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	st := s.streamLocked(k)
	t := st.status[typeURL]
	if t == nil {
		t = &typeStatus{}
		st.status[typeURL] = t
	}
	t.sentVersion, t.sentNonce, t.sentAt = version, nonce, time.Now()
}

// answered records a client's ACK or NACK of the response with nonce:
// version is the version it accepted last (in a NACK, the one it keeps).
func (s *Server) answered(k streamKey, typeURL, nonce, version, nackErr string, nack bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || nonce == "" {
		return
	}
	st := s.streamLocked(k)
	t := st.status[typeURL]
	if t == nil || nonce != t.sentNonce {
		return // an answer to an older response
	}
	if nack {
		t.nacked, t.nackErr, t.nackAt = true, nackErr, time.Now()
		return
	}
	if version == "" {
		version = t.sentVersion // Delta ACKs carry no version
	}
	t.nacked, t.nackErr, t.ackedVersion = false, "", version
}

// csds serves envoy.service.status.v3.ClientStatusDiscoveryService from
// Clients and the resources the server holds.
type csds struct {
	statuspb.UnimplementedClientStatusDiscoveryServiceServer
	s *Server
}

// FetchClientStatus returns every client's status; node matchers are not
// supported and ignored.
func (c csds) FetchClientStatus(context.Context, *statuspb.ClientStatusRequest) (*statuspb.ClientStatusResponse, error) {
	return c.s.clientStatus(), nil
}

// StreamClientStatus answers each request as FetchClientStatus does.
func (c csds) StreamClientStatus(stream statuspb.ClientStatusDiscoveryService_StreamClientStatusServer) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return nil // the client is done
		}
		if err := stream.Send(c.s.clientStatus()); err != nil {
			return err
		}
	}
}

func (s *Server) clientStatus() *statuspb.ClientStatusResponse {
	caches := map[string]map[string]types.Resource{
		resourcev3.ListenerType: s.lds.GetResources(),
		resourcev3.RouteType:    s.rds.GetResources(),
		resourcev3.ClusterType:  s.cds.GetResources(),
		resourcev3.EndpointType: s.eds.GetResources(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &statuspb.ClientStatusResponse{}
	for _, st := range s.streams {
		cc := &statuspb.ClientConfig{Node: &corepb.Node{Id: st.node}}
		for typ, names := range st.names {
			t := st.status[typ]
			for _, name := range slices.Sorted(maps.Keys(names)) {
				g := &statuspb.ClientConfig_GenericXdsConfig{TypeUrl: typ, Name: name}
				switch {
				case t == nil || t.sentNonce == "":
					g.ConfigStatus, g.ClientStatus = statuspb.ConfigStatus_NOT_SENT, adminpb.ClientResourceStatus_REQUESTED
				case t.nacked:
					g.ConfigStatus, g.ClientStatus = statuspb.ConfigStatus_ERROR, adminpb.ClientResourceStatus_NACKED
					g.ErrorState = &adminpb.UpdateFailureState{Details: t.nackErr, VersionInfo: t.sentVersion, LastUpdateAttempt: timestamppb.New(t.nackAt)}
				case t.ackedVersion == t.sentVersion:
					g.ConfigStatus, g.ClientStatus = statuspb.ConfigStatus_SYNCED, adminpb.ClientResourceStatus_ACKED
				default:
					g.ConfigStatus, g.ClientStatus = statuspb.ConfigStatus_STALE, adminpb.ClientResourceStatus_REQUESTED
				}
				if t != nil {
					g.VersionInfo = t.ackedVersion
					if !t.sentAt.IsZero() {
						g.LastUpdated = timestamppb.New(t.sentAt)
					}
				}
				if res, ok := caches[typ][name]; ok {
					if a, err := anypb.New(res); err == nil {
						g.XdsConfig = a
					}
				}
				cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, g)
			}
		}
		resp.Config = append(resp.Config, cc)
	}
	slices.SortFunc(resp.Config, func(a, b *statuspb.ClientConfig) int { return cmp.Compare(a.GetNode().GetId(), b.GetNode().GetId()) })
	return resp
}
