package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wayfinder-rpc/wayfinder/hello/hellopb"
	"github.com/wayfinder-rpc/wayfinder/xds"
)

// child is a child process of this command (-child server or -child
// goclient), read line by line.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr bytes.Buffer
}

// startChild runs this executable with -child role and extra env.
func startChild(role string, env []string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &child{cmd: exec.Command(self, append([]string{"-child", role}, args...)...)}
	c.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GRPC_XDS_BOOTSTRAP") }), env...)
	c.cmd.Stderr = &c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	c.lines = bufio.NewScanner(out)
	c.lines.Buffer(nil, 1<<20)
	return c, nil
}

// stop closes the child's stdin, which ends it, and waits for it.
func (c *child) stop() error {
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%v: %v\n%s", c.cmd.Args, err, c.stderr.String())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%v did not end within 30s of its stdin closing; killed", c.cmd.Args)
	}
}

// serverChild is the xDS server child.
type serverChild struct {
	*child
	addr string
}

func startServer() (*serverChild, error) {
	c, err := startChild("server", nil)
	if err != nil {
		return nil, err
	}
	s := &serverChild{child: c}
	st, err := s.read()
	if err != nil {
		_ = c.stop()
		return nil, err
	}
	s.addr = st.Addr
	return s, nil
}

func (s *serverChild) read() (childStats, error) {
	var st childStats
	if !s.lines.Scan() {
		return st, fmt.Errorf("the server child ended: %v\n%s", s.lines.Err(), s.stderr.String())
	}
	if err := json.Unmarshal(s.lines.Bytes(), &st); err != nil {
		return st, err
	}
	if st.Err != "" {
		return st, fmt.Errorf("server child: %s", st.Err)
	}
	return st, nil
}

// do sends c and returns the answer.
func (s *serverChild) do(c command) (childStats, error) {
	b, _ := json.Marshal(c)
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		return childStats{}, err
	}
	return s.read()
}

// goClient is a grpc-go xDS client child: it calls each of its targets
// in turn and reports each call as a line, read into picks.
type goClient struct {
	*child
	read chan struct{}

	mu    sync.Mutex
	picks []string
	at    []time.Time
	fails []string
}

func startGoClient(node, xdsAddr string, targets []string) (*goClient, error) {
	boot, err := xds.Bootstrap(xds.BootstrapConfig{Server: xdsAddr, NodeID: node})
	if err != nil {
		return nil, err
	}
	c, err := startChild("goclient", []string{"GRPC_XDS_BOOTSTRAP_CONFIG=" + string(boot)}, "-targets", strings.Join(targets, ","))
	if err != nil {
		return nil, err
	}
	g := &goClient{child: c, read: make(chan struct{})}
	go func() {
		defer close(g.read)
		for c.lines.Scan() {
			now := time.Now()
			kind, rest, _ := strings.Cut(c.lines.Text(), " ")
			g.mu.Lock()
			if kind == "ok" {
				g.picks = append(g.picks, rest)
				g.at = append(g.at, now)
			} else {
				g.fails = append(g.fails, rest)
			}
			g.mu.Unlock()
		}
	}()
	return g, nil
}

func (g *goClient) stop() error {
	err := g.child.stop()
	<-g.read
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && len(g.fails) > 0 {
		err = fmt.Errorf("%d failed calls, the first: %s", len(g.fails), g.fails[0])
	}
	return err
}

func (g *goClient) calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.picks)
}

// firstPick returns when the first call since mark reached name.
func (g *goClient) firstPick(mark int, name string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := mark; i < len(g.picks); i++ {
		if g.picks[i] == name {
			return g.at[i], true
		}
	}
	return time.Time{}, false
}

// only reports whether the last n calls reached only names.
func (g *goClient) only(n int, names ...string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.picks) < n {
		return false
	}
	for _, p := range g.picks[len(g.picks)-n:] {
		if !slices.Contains(names, p) {
			return false
		}
	}
	return true
}

// runGoClient is the goclient child: grpc-go's xDS client (the
// bootstrap is read at process start, hence a process of its own)
// calling each target in turn, one line a call, until stdin closes.
func runGoClient(targets []string, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var clients []hellopb.HelloServiceClient
	for _, t := range targets {
		cc, err := grpc.NewClient(t, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		clients = append(clients, hellopb.NewHelloServiceClient(cc))
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	first := make([]bool, len(clients))
	for i := range first {
		first[i] = true
	}
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(clients) {
		timeout := 5 * time.Second
		if first[i] {
			timeout = time.Minute
		}
		cctx, done := context.WithTimeout(ctx, timeout)
		reply, err := clients[i].SayHello(cctx, &hellopb.HelloRequest{Name: "xds"}, grpc.WaitForReady(first[i]))
		done()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			st := status.Convert(err)
			fmt.Fprintf(out, "err %s %s\n", st.Code(), strings.ReplaceAll(st.Message(), "\n", " "))
		} else {
			first[i] = false
			msg := reply.GetMessage()
			fmt.Fprintf(out, "ok %s\n", msg[strings.LastIndex(msg, " ")+1:])
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return nil
}
