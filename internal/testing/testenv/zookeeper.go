package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ZooKeeperJarsEnv names the environment variable holding the ZooKeeper
// server's class path (jars separated by ':'). Its default is Debian's
// zookeeper package, which `make zookeeper` (part of `make test`)
// installs: /usr/share/java/zookeeper.jar names its dependencies in its
// manifest. ZooKeeperJavaEnv names the java binary (default: java on
// PATH).
const (
	ZooKeeperJarsEnv = "WAYFINDER_ZOOKEEPER_JARS"
	ZooKeeperJavaEnv = "WAYFINDER_JAVA"
)

// zkDefaultJars is Debian's server jar, and slf4j's simple logger so that
// the server's log reaches its log file.
var zkDefaultJars = []string{"/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"}

// zkStartTimeout bounds how long the JVM may take to answer "ruok"; it
// takes about 2 s on loopback, longer on a loaded 2-core machine.
const zkStartTimeout = 60 * time.Second

// ZooKeeperTick is the test server's tickTime: sessions may be as short
// as two ticks, so tests can let one expire quickly.
const ZooKeeperTick = 200 * time.Millisecond

// ZooKeeper is one standalone ZooKeeper server (a JVM child process) on
// a loopback port, with its data in a temporary directory.
//
// mu guards cmd and exited: Kill and Restart may be called from any
// goroutine of the test.
type ZooKeeper struct {
	addr    string
	args    []string
	java    string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Addr returns the server's client address, host:port.
func (z *ZooKeeper) Addr() string { return z.addr }

// StartZooKeeper starts a standalone ZooKeeper 3.8 on a free loopback
// port (admin server off, "ruok" and "srvr" allowed, sessions from 2
// ticks to 60 s), waits until it answers "ruok", and stops it when the
// test ends. It fails the test if java or the jars are missing.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	java := Binary(t, ZooKeeperJavaEnv, "java")
	jars := zkDefaultJars
	if v := os.Getenv(ZooKeeperJarsEnv); v != "" {
		jars = strings.Split(v, ":")
	}
	for _, j := range jars {
		if _, err := os.Stat(j); err != nil {
			t.Fatalf("testenv: ZooKeeper jar %s: %v; install Debian's zookeeper package (`make zookeeper`, which make test runs) or set %s", j, err, ZooKeeperJarsEnv)
		}
	}
	dir := t.TempDir()
	z := &ZooKeeper{addr: freeAddr(t), java: java, logPath: filepath.Join(dir, "zookeeper.log")}
	_, port, _ := net.SplitHostPort(z.addr)
	cfg := fmt.Sprintf(`tickTime=%d
dataDir=%s
clientPort=%s
clientPortAddress=127.0.0.1
maxClientCnxns=0
minSessionTimeout=%d
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
`, ZooKeeperTick.Milliseconds(), filepath.Join(dir, "data"), port, 2*ZooKeeperTick.Milliseconds())
	cfgPath := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	z.args = []string{
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
		"-Dzookeeper.admin.enableServer=false",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", strings.Join(jars, ":"),
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfgPath,
	}
	if err := z.start(); err != nil {
		t.Fatalf("testenv: start ZooKeeper: %v", err)
	}
	t.Cleanup(z.kill)
	z.WaitReady(t)
	return z
}

func (z *ZooKeeper) start() error {
	log, err := os.OpenFile(z.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(z.java, z.args...)
	cmd.Stdout, cmd.Stderr = log, log
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(exited)
	}()
	z.mu.Lock()
	z.cmd, z.exited = cmd, exited
	z.mu.Unlock()
	return nil
}

// WaitReady fails the test unless the server answers "ruok" and serves
// requests ("srvr" reports its version: "ruok" answers "imok" before the
// server has loaded its data and serves) in time.
func (z *ZooKeeper) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(zkStartTimeout)
	var last error
	for {
		z.mu.Lock()
		exited := z.exited
		z.mu.Unlock()
		select {
		case <-exited:
			t.Fatalf("testenv: ZooKeeper exited during start:\n%s", z.logTail())
		default:
		}
		if last = z.ruok(); last == nil {
			if z.Version() != "unknown" {
				return
			}
			last = errors.New(`"srvr": not serving requests yet`)
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: ZooKeeper at %s not ready after %v (%v):\n%s", z.addr, zkStartTimeout, last, z.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ruok asks the four-letter word "ruok" and wants "imok".
func (z *ZooKeeper) ruok() error {
	c, err := net.DialTimeout("tcp", z.addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if string(b) != "imok" {
		return fmt.Errorf("ruok answered %q (%v)", b, err)
	}
	return nil
}

// Version returns the server's version as its "srvr" command reports it
// (for example "3.8.0-..."), or "unknown".
func (z *ZooKeeper) Version() string {
	c, err := net.DialTimeout("tcp", z.addr, time.Second)
	if err != nil {
		return "unknown"
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return "unknown"
	}
	b, _ := io.ReadAll(c)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Zookeeper version: "); ok {
			v, _, _ = strings.Cut(v, ",")
			// Debian's build leaves its git placeholder: "3.8.0-${mvngit.commit.id}".
			v, _, _ = strings.Cut(v, "-${")
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Kill stops the server with SIGKILL and waits for it; its data stays
// for Restart.
func (z *ZooKeeper) Kill(t testing.TB) {
	t.Helper()
	z.kill()
}

// Restart starts a killed server again on the same port and data, and
// waits until it answers.
func (z *ZooKeeper) Restart(t testing.TB) {
	t.Helper()
	z.kill()
	if err := z.start(); err != nil {
		t.Fatalf("testenv: restart ZooKeeper: %v", err)
	}
	z.WaitReady(t)
}

func (z *ZooKeeper) kill() {
	z.mu.Lock()
	cmd, exited := z.cmd, z.exited
	z.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

func (z *ZooKeeper) logTail() string {
	b, _ := os.ReadFile(z.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
