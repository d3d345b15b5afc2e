package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	gbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	_ "github.com/wayfinder-rpc/wayfinder/balancer/hash"    // -policy wayfinder_consistent_hash
	_ "github.com/wayfinder-rpc/wayfinder/balancer/outlier" // -policy wayfinder_outlier_ejection
	_ "github.com/wayfinder-rpc/wayfinder/balancer/p2c"     // -policy wayfinder_p2c_ewma
	_ "github.com/wayfinder-rpc/wayfinder/balancer/route"   // -policy wayfinder_route
	_ "github.com/wayfinder-rpc/wayfinder/balancer/wrr"     // -policy wayfinder_weighted_round_robin
	_ "github.com/wayfinder-rpc/wayfinder/balancer/zone"    // -policy wayfinder_zone_aware
	_ "github.com/wayfinder-rpc/wayfinder/hello/hellopb"    // HelloService works without reflection
	"github.com/wayfinder-rpc/wayfinder/registry"
	"github.com/wayfinder-rpc/wayfinder/resolver"
)

func cmdCall(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("call")
	policy := fs.String("policy", "round_robin", "load-balancing policy")
	n := fs.Int("n", 1, "number of calls")
	data := fs.String("d", "{}", "request as protobuf JSON")
	timeout := timeoutFlag(fs, "how long to wait for the registry's answer, and the deadline of each call")
	useReflection := fs.Bool("reflect", false, "describe the method through server reflection even if it is compiled in")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	if *n < 1 {
		return usageError("-n must be at least 1")
	}
	if err := positive(*timeout); err != nil {
		return err
	}
	if gbalancer.Get(*policy) == nil {
		return usageError(fmt.Sprintf("-policy %q: unknown policy; known: %s", *policy, strings.Join(knownPolicies(), ", ")))
	}
	// The registry is opened here too: to fail at once, with advice, when
	// it is unreachable or the service has no instances, rather than
	// after -timeout; and to map peer addresses back to instances.
	lctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reg, svc, _, err := lookupTarget(lctx, pos[0], *timeout)
	if err != nil {
		return err
	}
	defer reg.Close()
	cc, err := resolver.NewClient(pos[0], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(fmt.Sprintf(`{"loadBalancingConfig":[{%q:{}}]}`, *policy)))
	if err != nil {
		return err
	}
	defer cc.Close()

	md, err := findMethod(ctx, cc, pos[1], *useReflection, *timeout)
	if err != nil {
		return err
	}
	req := dynamicpb.NewMessage(md.Input())
	if err := protojson.Unmarshal([]byte(*data), req); err != nil {
		return usageError(fmt.Sprintf("-d: not a %s: %v", md.Input().FullName(), err))
	}
	fullMethod := fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name())
	for range *n {
		resp := dynamicpb.NewMessage(md.Output())
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		err := cc.Invoke(cctx, fullMethod, req, resp, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", fullMethod, err)
		}
		body, _ := protojson.MarshalOptions{}.Marshal(resp)
		fmt.Fprintf(out, "%s answered by %s: %s\n", fullMethod, instanceAt(ctx, reg, svc, p), body)
	}
	return nil
}

// knownPolicies lists the policies -policy accepts: grpc-go's own and
// Wayfinder's, as far as this binary registers them.
func knownPolicies() []string {
	var out []string
	for _, name := range []string{"pick_first", "round_robin", "wayfinder_weighted_round_robin", "wayfinder_p2c_ewma",
		"wayfinder_consistent_hash", "wayfinder_zone_aware", "wayfinder_outlier_ejection", "wayfinder_route"} {
		if gbalancer.Get(name) != nil {
			out = append(out, name)
		}
	}
	return out
}

// instanceAt names the instance at the peer's address. Instances may be
// registered by host name (localhost:50051, a pod's DNS name) while the
// peer is an IP, so a host that is not the peer's IP is resolved.
func instanceAt(ctx context.Context, d registry.Discovery, svc string, p peer.Peer) string {
	if p.Addr == nil {
		return "?"
	}
	addr := p.Addr.String()
	insts, err := d.Lookup(ctx, svc)
	if err != nil {
		return addr
	}
	for _, in := range insts {
		if in.Address == addr {
			return in.ID + " (" + addr + ")"
		}
	}
	peerAP, err := netip.ParseAddrPort(addr)
	if err != nil {
		return addr
	}
	for _, in := range insts {
		host, port, err := net.SplitHostPort(in.Address)
		if err != nil || port != strconv.Itoa(int(peerAP.Port())) {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
		cancel()
		if err != nil {
			continue
		}
		for _, ip := range ips {
			if ip.Unmap() == peerAP.Addr().Unmap() {
				return in.ID + " (" + in.Address + " = " + addr + ")"
			}
		}
	}
	return addr
}

// findMethod resolves "Service/Method", "pkg.Service/Method",
// "pkg.Service.Method" or just "Method" (if one service has it): from
// the descriptors compiled into this binary, else through the server's
// reflection service.
func findMethod(ctx context.Context, cc grpc.ClientConnInterface, name string, forceReflection bool, timeout time.Duration) (protoreflect.MethodDescriptor, error) {
	files := protoregistry.GlobalFiles
	if forceReflection {
		files = nil
	}
	if files != nil {
		if md, err := matchMethod(files, name); err == nil {
			return md, nil
		}
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reflected, err := reflectFiles(rctx, cc)
	if err != nil {
		hint := "hint: the server offers no reflection (a Go server adds it with reflection.Register)"
		if status.Code(err) != codes.Unimplemented {
			hint = "hint: no instance answered the reflection request within -timeout"
		}
		if forceReflection {
			return nil, hintError{fmt.Errorf("-reflect: server reflection failed: %w", err), hint}
		}
		hint += ";\n      services compiled into wayfinder: " + strings.Join(services(protoregistry.GlobalFiles), ", ")
		return nil, hintError{fmt.Errorf("method %q is not compiled in, and server reflection failed: %w", name, err), hint}
	}
	md, err := matchMethod(reflected, name)
	if err != nil {
		return nil, hintError{err, "hint: the server offers: " + strings.Join(methods(reflected), ", ")}
	}
	return md, nil
}

// services lists the services in files, leaving out reflection and the
// etcd server's API, which the etcd client links in.
func services(files *protoregistry.Files) []string {
	var out []string
	for _, m := range methods(files) {
		s, _, _ := strings.Cut(m, "/")
		if strings.HasPrefix(s, "etcdserverpb.") {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// methods lists the "pkg.Service/Method" names in files, sorted, leaving
// out the reflection service.
func methods(files *protoregistry.Files) []string {
	var out []string
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if strings.HasPrefix(string(sd.FullName()), "grpc.reflection.") {
				continue
			}
			for j := range sd.Methods().Len() {
				out = append(out, string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	slices.Sort(out)
	return out
}

func matchMethod(files *protoregistry.Files, name string) (protoreflect.MethodDescriptor, error) {
	svc, method := "", name
	if i := strings.LastIndexAny(name, "/."); i >= 0 {
		svc, method = strings.TrimPrefix(name[:i], "/"), name[i+1:]
	}
	var found []protoreflect.MethodDescriptor
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if svc != "" && string(sd.FullName()) != svc && string(sd.Name()) != svc {
				continue
			}
			if md := sd.Methods().ByName(protoreflect.Name(method)); md != nil {
				found = append(found, md)
			}
		}
		return true
	})
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no method %q", name)
	case 1:
		return found[0], nil
	default:
		var names []string
		for _, md := range found {
			names = append(names, string(md.FullName()))
		}
		return nil, fmt.Errorf("method %q is ambiguous: %s", name, strings.Join(names, ", "))
	}
}

// reflectFiles asks the server for every service it offers and the files
// that define them.
func reflectFiles(ctx context.Context, cc grpc.ClientConnInterface) (*protoregistry.Files, error) {
	stream, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx, grpc.WaitForReady(true))
	if err != nil {
		return nil, err
	}
	defer stream.CloseSend()
	ask := func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		if err := stream.Send(req); err != nil {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if e := resp.GetErrorResponse(); e != nil {
			return nil, fmt.Errorf("reflection: %s", e.GetErrorMessage())
		}
		return resp, nil
	}
	resp, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	if err != nil {
		return nil, err
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		fr, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: s.GetName()}})
		if err != nil {
			return nil, err
		}
		for _, raw := range fr.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fdp := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(raw, fdp); err != nil {
				return nil, fmt.Errorf("reflection: bad descriptor: %w", err)
			}
			if !seen[fdp.GetName()] {
				seen[fdp.GetName()] = true
				set.File = append(set.File, fdp)
			}
		}
	}
	if len(set.File) == 0 {
		return nil, errors.New("reflection: the server lists no services")
	}
	return protodesc.NewFiles(set)
}
