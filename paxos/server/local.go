package server

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/statemachine"
)

// LocalConfig configures a cluster of members in one process, on loopback:
// what `paxosd dev` runs, and what tests and examples use.
type LocalConfig struct {
	// Dir holds one data directory per member (Dir/1, Dir/2, …). If every
	// one is empty the cluster is bootstrapped; if all hold data it
	// restarts; a mix is refused.
	Dir string
	// Size is how many members the cluster has; default 3.
	Size int
	// Host is the loopback address to listen on; default 127.0.0.1.
	Host string
	// ClientPort and PeerPort are member 1's ports; member i uses port+i-1.
	// Zero picks free ports.
	ClientPort, PeerPort int
	// Template supplies the tuning and the logger of every member. Its
	// identity, address, listener, directory and machine fields are
	// ignored.
	Template Config
	// Machine makes each member's state machine; default the KV machine.
	Machine func() statemachine.Machine
	// TLSDir, if set, runs the cluster over TLS with throwaway
	// certificates made there at start (certs.IssueDev): mutual TLS
	// between members, and on the client ports client certificates whose
	// roles are certs.DevRoles.
	TLSDir string
	// Adjust, if set, changes member id's Config last, before it starts:
	// tests give one member a faulty file system this way.
	Adjust func(id paxos.NodeID, c *Config)
}

// Local is a running local cluster.
type Local struct {
	cfg          LocalConfig
	members      paxos.Membership
	peerAddrs    map[paxos.NodeID]string
	clientAddrs  map[paxos.NodeID]string
	servers      map[paxos.NodeID]*Server
	bootstrapped bool
	dev          certs.Dev // with TLSDir
	roles        ClientRoles
}

// localToken is the cluster token of local clusters.
const localToken = "paxosd-local"

// StartLocal starts every member of a local cluster.
func StartLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Size <= 0 {
		cfg.Size = 3
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Machine == nil {
		cfg.Machine = func() statemachine.Machine { return statemachine.NewKV() }
	}
	l := &Local{cfg: cfg, members: paxos.Uniform(cfg.Size), peerAddrs: map[paxos.NodeID]string{},
		clientAddrs: map[paxos.NodeID]string{}, servers: map[paxos.NodeID]*Server{}}
	empty := 0
	for i := 1; i <= cfg.Size; i++ {
		e, err := dirIsEmpty(l.dir(paxos.NodeID(i)))
		if err != nil {
			return nil, err
		}
		if e {
			empty++
		}
	}
	if empty != 0 && empty != cfg.Size {
		return nil, fmt.Errorf("server: %s holds data for some members but not all; remove the whole directory to start afresh, or use another one", cfg.Dir)
	}
	l.bootstrapped = empty == cfg.Size
	if cfg.TLSDir != "" {
		var err error
		var ids []paxos.NodeID
		for _, m := range l.members.Members() {
			ids = append(ids, m.ID)
		}
		if l.dev, err = certs.IssueDev(cfg.TLSDir, ids, []string{cfg.Host, "localhost"}, 30*24*time.Hour); err != nil {
			return nil, fmt.Errorf("server: throwaway certificates in %s: %w", cfg.TLSDir, err)
		}
		if l.roles, err = ParseClientRoles(certs.DevRoles); err != nil {
			return nil, err
		}
	}

	// Listen everywhere first: with free ports, the addresses are only
	// known once the listeners exist.
	peerLs := map[paxos.NodeID]net.Listener{}
	clientLs := map[paxos.NodeID]net.Listener{}
	closeAll := func() {
		for _, ln := range peerLs {
			ln.Close()
		}
		for _, ln := range clientLs {
			ln.Close()
		}
	}
	for i := 1; i <= cfg.Size; i++ {
		id := paxos.NodeID(i)
		pl, err := listen(cfg.Host, cfg.PeerPort, i)
		if err != nil {
			closeAll()
			return nil, err
		}
		peerLs[id] = pl
		cl, err := listen(cfg.Host, cfg.ClientPort, i)
		if err != nil {
			closeAll()
			return nil, err
		}
		clientLs[id] = cl
		l.peerAddrs[id], l.clientAddrs[id] = pl.Addr().String(), cl.Addr().String()
	}
	for i := 1; i <= cfg.Size; i++ {
		id := paxos.NodeID(i)
		if err := l.start(id, peerLs[id], clientLs[id], l.bootstrapped); err != nil {
			delete(peerLs, id)
			delete(clientLs, id)
			closeAll() // Start closed this member's listeners
			l.Stop()
			return nil, err
		}
		delete(peerLs, id)
		delete(clientLs, id)
	}
	return l, nil
}

func listen(host string, base, i int) (net.Listener, error) {
	port := 0
	if base != 0 {
		port = base + i - 1
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: member %d: listen on %s: %w", i, addr, err)
	}
	return ln, nil
}

func (l *Local) dir(id paxos.NodeID) string { return filepath.Join(l.cfg.Dir, id.String()) }

func (l *Local) start(id paxos.NodeID, pl, cl net.Listener, bootstrap bool) error {
	c := l.cfg.Template
	c.ID, c.Membership, c.PeerAddrs, c.ClusterToken = id, l.members, l.peerAddrs, localToken
	c.DataDir, c.Bootstrap = l.dir(id), bootstrap
	c.PeerListener, c.ClientListener, c.ClientAddr = pl, cl, ""
	c.Machine = l.cfg.Machine()
	if l.cfg.TLSDir != "" {
		var err error
		if c.PeerTLS, err = certs.Load(l.dev.Nodes[id], c.Logger); err != nil {
			return fmt.Errorf("server: member %d: %w", id, err)
		}
		c.ClientTLS, c.ClientRoles = c.PeerTLS, l.roles
	}
	if l.cfg.Adjust != nil {
		l.cfg.Adjust(id, &c)
	}
	s, err := Start(c)
	if err != nil {
		return fmt.Errorf("server: member %d: %w", id, err)
	}
	l.servers[id] = s
	return nil
}

// Certificates returns the throwaway certificates of a cluster started with
// TLSDir.
func (l *Local) Certificates() certs.Dev { return l.dev }

// Bootstrapped reports whether StartLocal created the cluster (rather than
// restarting one from its data).
func (l *Local) Bootstrapped() bool { return l.bootstrapped }

// Servers returns the running members in ID order.
func (l *Local) Servers() []*Server {
	var out []*Server
	for i := 1; i <= l.cfg.Size; i++ {
		if s := l.servers[paxos.NodeID(i)]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Endpoints returns every member's client address, running or not.
func (l *Local) Endpoints() []string {
	var out []string
	for i := 1; i <= l.cfg.Size; i++ {
		out = append(out, l.clientAddrs[paxos.NodeID(i)])
	}
	return out
}

// StopMember stops one member; its data stays.
func (l *Local) StopMember(id paxos.NodeID) error {
	s := l.servers[id]
	if s == nil {
		return fmt.Errorf("server: member %d is not running", id)
	}
	delete(l.servers, id)
	return s.Stop()
}

// StartMember restarts a stopped member on its old addresses.
func (l *Local) StartMember(id paxos.NodeID) error {
	if l.servers[id] != nil {
		return fmt.Errorf("server: member %d is already running", id)
	}
	pl, err := net.Listen("tcp", l.peerAddrs[id])
	if err != nil {
		return fmt.Errorf("server: member %d: %w", id, err)
	}
	cl, err := net.Listen("tcp", l.clientAddrs[id])
	if err != nil {
		pl.Close()
		return fmt.Errorf("server: member %d: %w", id, err)
	}
	return l.start(id, pl, cl, false)
}

// Wait blocks until some member stops on its own, or Stop is called.
func (l *Local) Wait() error {
	errs := make(chan error, len(l.servers))
	for _, s := range l.servers {
		go func() { errs <- s.Wait() }()
	}
	return <-errs
}

// Stop stops every running member and returns the first error.
func (l *Local) Stop() error {
	var errs []error
	for id, s := range l.servers {
		// NB: every member stops: handing leadership to one that stops
		// next would only make the stop slower.
		errs = append(errs, s.stop(false))
		delete(l.servers, id)
	}
	return errors.Join(errs...)
}
