package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/client"
)

// spawned is a cluster of 'paxosd serve' processes that bench started: the
// setup users run, each member a process of its own.
type spawned struct {
	dir   string
	procs []*exec.Cmd
	eps   []string
	tls   *tls.Config // the admin client's, with TLS on
}

// spawnCluster starts n members as separate 'paxosd serve' processes, each
// on its own 127.0.0.x address, in temporary directories under dir, and
// waits until one leads. extra are flags every member gets. With tlsOn the
// members use throwaway certificates made in dir/tls, as paxosd dev --tls.
func spawnCluster(ctx context.Context, n int, dir string, extra []string, tlsOn bool) (*spawned, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--spawn: find the paxosd binary: %w", err)
	}
	sp := &spawned{dir: dir}
	var peers, clients []string
	for i := 1; i <= n; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		p, err := freePort(host)
		if err != nil {
			return nil, err
		}
		q, err := freePort(host)
		if err != nil {
			return nil, err
		}
		peers = append(peers, fmt.Sprintf("%d=%s", i, net.JoinHostPort(host, strconv.Itoa(p))))
		clients = append(clients, net.JoinHostPort(host, strconv.Itoa(q)))
	}
	cluster := strings.Join(peers, ",")
	var dev certs.Dev
	if tlsOn {
		var ids []paxos.NodeID
		var hosts []string
		for i := 1; i <= n; i++ {
			ids, hosts = append(ids, paxos.NodeID(i)), append(hosts, fmt.Sprintf("127.0.0.%d", i))
		}
		if dev, err = certs.IssueDev(filepath.Join(dir, "tls"), ids, hosts, 24*time.Hour); err != nil {
			return nil, fmt.Errorf("--tls: %w", err)
		}
		admin := dev.Clients[certs.DevAdmin]
		if sp.tls, err = certs.ClientConfig(dev.CA, admin.Cert, admin.Key); err != nil {
			return nil, fmt.Errorf("--tls: %w", err)
		}
	}
	for i := 1; i <= n; i++ {
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("member-%d.log", i)))
		if err != nil {
			sp.stop()
			return nil, err
		}
		args := append([]string{"serve", "--id", strconv.Itoa(i), "--data-dir", filepath.Join(dir, strconv.Itoa(i)),
			"--cluster", cluster, "--listen-client", clients[i-1], "--bootstrap"}, extra...)
		if tlsOn {
			f := dev.Nodes[paxos.NodeID(i)]
			args = append(args, "--peer-cert", f.Cert, "--peer-key", f.Key, "--peer-ca", f.CA,
				"--client-cert", f.Cert, "--client-key", f.Key, "--client-ca", f.CA, "--client-roles", certs.DevRoles)
		}
		cmd := exec.Command(self, args...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			log.Close()
			sp.stop()
			return nil, fmt.Errorf("--spawn: start member %d: %w", i, err)
		}
		log.Close() // the child has its own descriptor
		sp.procs = append(sp.procs, cmd)
	}
	sp.eps = clients
	cl, err := client.NewWithConfig(client.Config{Endpoints: clients, Timeout: time.Second, TLS: sp.tls})
	if err != nil {
		sp.stop()
		return nil, err
	}
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, ep := range clients {
			if st, err := cl.Status(ctx, ep); err == nil && st.IsLeader {
				return sp, nil
			}
		}
		if time.Now().After(deadline) {
			sp.stop()
			return nil, fmt.Errorf("--spawn: no member led within 20s; see the logs in %s", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a TCP port free on host now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("--spawn: find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// peakRSSMB returns the largest peak resident set size among the members,
// in MB (10^6 bytes), as Linux reports it (VmHWM); 0 where it cannot tell.
func (sp *spawned) peakRSSMB() float64 {
	var peak float64
	for _, p := range sp.procs {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Process.Pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if kb, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 64)
				if err == nil {
					peak = max(peak, v*1024/1e6)
				}
			}
		}
		f.Close()
	}
	return peak
}

// stop stops every member with SIGTERM and waits for it.
func (sp *spawned) stop() {
	for _, p := range sp.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range sp.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}
