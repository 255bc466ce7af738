package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestDataIDsAreKept(t *testing.T) {
	dir := t.TempDir()
	a, err := loadDataID(vfs.Default, dir)
	if err != nil || a == 0 {
		t.Fatalf("first data ID: %x, %v", a, err)
	}
	if b, err := loadDataID(vfs.Default, dir); err != nil || b != a {
		t.Fatalf("data ID read back: %x, %v; want %x", b, err, a)
	}
	p, err := loadPeerData(vfs.Default, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.check(2, 7, true); err != nil {
		t.Fatal(err)
	}
	if err := p.check(2, 7, true); err != nil {
		t.Fatal(err)
	}
	// After a restart the member still knows node 2's data.
	p, err = loadPeerData(vfs.Default, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.check(2, 8, true); err == nil || !strings.Contains(err.Error(), "node 2 came back with other data") || !strings.Contains(err.Error(), "paxosd member remove 2") {
		t.Fatalf("node 2 with other data: %v", err)
	}
	if err := p.check(3, 8, true); err != nil {
		t.Fatalf("a new peer: %v", err)
	}
	// A learner that lost its data lost no promise: it is let in, and its
	// new data ID is what is remembered.
	if err := p.check(3, 9, false); err != nil {
		t.Fatalf("a learner with other data: %v", err)
	}
	if err := p.check(3, 8, true); err == nil {
		t.Fatal("node 3's old data ID accepted after its new one was remembered")
	}
	for name, body := range map[string]string{dataIDFile: "zz\n", peerDataFile: "2 7\nthree 8\n"} {
		bad := t.TempDir()
		os.WriteFile(filepath.Join(bad, name), []byte(body), 0o600)
		_, err1 := loadDataID(vfs.Default, bad)
		_, err2 := loadPeerData(vfs.Default, bad, nil)
		if err1 == nil && err2 == nil || !strings.Contains(errString(err1)+errString(err2), "remove it") {
			t.Errorf("a damaged %s: %v, %v; want an error that says what to do", name, err1, err2)
		}
	}
}
