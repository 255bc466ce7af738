package e2e

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy forwards TCP connections from its listener to target, counting the
// bytes it passes towards target, and can cut every connection at once.
type proxy struct {
	ln     net.Listener
	target string
	toward atomic.Int64 // bytes forwarded to target

	mu    sync.Mutex
	conns []net.Conn
	// downUntil: connections accepted before then are closed at once.
	downUntil time.Time
}

func newProxy(t *testing.T, listen, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", listen, err)
	}
	p := &proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut(0)
	})
	return p
}

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := time.Now().Before(p.downUntil)
		p.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(countWriter{out, &p.toward}, in) // NB: ends when either side closes
			out.Close()
			in.Close()
		}()
		go func() {
			_, _ = io.Copy(in, out)
			in.Close()
			out.Close()
		}()
	}
}

// cut closes every connection open through the proxy, and refuses new ones
// for the next d.
func (p *proxy) cut(d time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.downUntil = time.Now().Add(d)
	for _, c := range p.conns {
		c.Close()
	}
	n := len(p.conns) / 2
	p.conns = nil
	return n
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
