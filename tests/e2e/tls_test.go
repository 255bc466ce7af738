package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/certs"
)

// TestServeOverTLS runs serve processes with mutual TLS between members
// and client certificates with roles, as an operator would: the CLI with
// --cacert/--cert/--key (here through their environment variables), a
// member that joins over TLS, and the refusals a misconfiguration gets.
func TestServeOverTLS(t *testing.T) {
	c := newCluster(t, 3)
	m4 := c.grow()
	var ids []paxos.NodeID
	var hosts []string
	for _, m := range c.members {
		ids, hosts = append(ids, paxos.NodeID(m.id)), append(hosts, m.host)
	}
	dev, err := certs.IssueDev(t.TempDir(), ids, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsArgs := func(id int) []string {
		f := dev.Nodes[paxos.NodeID(id)]
		return []string{"--peer-cert", f.Cert, "--peer-key", f.Key, "--peer-ca", f.CA,
			"--client-cert", f.Cert, "--client-key", f.Key, "--client-ca", f.CA, "--client-roles", certs.DevRoles}
	}
	as := func(name string) []string {
		f := dev.Clients[name]
		return []string{"PAXOSD_CACERT=" + dev.CA, "PAXOSD_CERT=" + f.Cert, "PAXOSD_KEY=" + f.Key}
	}
	adminAddr := net.JoinHostPort(c.member(1).host, strconv.Itoa(freePort(t, c.member(1).host)))
	for id := 1; id <= 3; id++ {
		args := tlsArgs(id)
		if id == 1 {
			args = append(args, "--listen-admin", adminAddr)
		}
		c.start(id, true, args...)
	}
	eps := strings.Join([]string{c.member(1).client, c.member(2).client, c.member(3).client}, ",")
	run := func(env []string, args ...string) (string, string, int) {
		return cliEnv(t, env, nil, append(args, "--endpoints", eps)...)
	}
	waitUntil(t, "a put over TLS", 20*time.Second, func() bool {
		_, _, code := run(as(certs.DevWriter), "put", "k", "v", "--timeout", "2s")
		return code == 0
	})
	if out, errOut, code := run(as(certs.DevReader), "get", "k"); code != 0 || out != "v\n" {
		t.Fatalf("reader get: %q, %q, exit %d", out, errOut, code)
	}
	if _, errOut, code := run(as(certs.DevReader), "put", "k", "w"); code == 0 || !strings.Contains(errOut, `client certificate "reader" has the role readonly`) {
		t.Fatalf("reader put: exit %d, %q; want permission denied", code, errOut)
	}
	if _, errOut, code := run(nil, "get", "k", "--timeout", "1s"); code == 0 || !strings.Contains(errOut, "--cacert") {
		t.Fatalf("plaintext get: exit %d, %q; want a refusal that points at --cacert", code, errOut)
	}
	// The refusals are counted on member 1's admin listener, which also
	// says it is ready.
	waitUntil(t, "member 1's metrics to count a plaintext client", 10*time.Second, func() bool {
		return strings.Contains(httpGet(t, "http://"+adminAddr+"/metrics"), `paxosd_rejected_total{port="client",reason="tls"}`)
	})
	if body := httpGet(t, "http://"+adminAddr+"/readyz"); !strings.HasPrefix(body, "ready: member 1 ") {
		t.Errorf("/readyz: %q", body)
	}
	// A member given another member's certificate does not start.
	_, errOut, code := cli(t, nil, append([]string{"serve", "--id", "3", "--data-dir", t.TempDir(), "--cluster", c.flag, "--bootstrap"}, tlsArgs(2)...)...)
	if code != 2 || !strings.Contains(errOut, "is for node 2, but this is member 3") {
		t.Fatalf("serve with node 2's certificate as member 3: exit %d, %q", code, errOut)
	}

	// A fourth member joins over TLS: its snapshot comes through a client
	// port, with an admin certificate.
	if out, errOut, code := run(as(certs.DevAdmin), "member", "add", fmt.Sprintf("4=%s", m4.peer), "--client", m4.client); code != 0 {
		t.Fatalf("member add: %q, %q, exit %d", out, errOut, code)
	}
	admin := dev.Clients[certs.DevAdmin]
	c.start(4, false, append([]string{"--join", eps, "--join-cacert", dev.CA, "--join-cert", admin.Cert, "--join-key", admin.Key}, tlsArgs(4)...)...)
	waitUntil(t, "member 4 to catch up over TLS", 30*time.Second, func() bool {
		out, _, _ := run(as(certs.DevReader), "status", "-o", "json", "--endpoints", eps+","+m4.client, "--timeout", "2s")
		var rows []statusRow
		if json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 4 {
			return false
		}
		for _, r := range rows {
			if r.Error != "" || r.Applied != rows[0].Applied || r.AppliedHash != rows[0].AppliedHash {
				return false
			}
		}
		return true
	})
	for id := 1; id <= 4; id++ {
		if log := c.member(id).log.String(); strings.Contains(log, "unauthenticated") {
			t.Errorf("member %d logged that peers are unauthenticated though it runs TLS:\n%s", id, log)
		}
	}
}

// httpGet returns the body at url ("" if it cannot be read).
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
