package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/server"
)

// startCluster runs a 3-member cluster in this process, as `paxosd dev`
// does, and returns its client addresses and a function that stops it.
func startCluster() ([]string, func()) {
	dir, err := os.MkdirTemp("", "paxosd-example")
	if err != nil {
		log.Fatal(err)
	}
	l, err := server.StartLocal(server.LocalConfig{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	return l.Endpoints(), func() {
		l.Stop()
		os.RemoveAll(dir)
	}
}

// startClient starts a cluster as startCluster does and returns a client of
// it, and a function that closes both.
func startClient() (*client.Client, func()) {
	endpoints, stop := startCluster()
	c, err := client.New(endpoints...)
	if err != nil {
		log.Fatal(err)
	}
	return c, func() {
		c.Close()
		stop()
	}
}

func Example() {
	endpoints, stop := startCluster()
	defer stop()

	c, err := client.New(endpoints...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if err := c.Put(ctx, "greeting", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("greeting = %s\n", v)

	swapped, err := c.CompareAndSwap(ctx, "greeting", []byte("hello"), []byte("hi"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("swapped:", swapped)

	_, err = c.Get(ctx, "nobody")
	fmt.Println("missing key:", errors.Is(err, client.ErrNotFound))
	// Output:
	// greeting = hello
	// swapped: true
	// missing key: true
}

// Ranges are read a page at a time; transactions compare, then run one list
// of operations or the other, all writes in one revision.
func ExampleClient_Txn() {
	c, stop := startClient()
	defer stop()
	ctx := context.Background()

	for _, k := range []string{"svc/a", "svc/b", "svc/c"} {
		if err := c.Put(ctx, k, []byte("up")); err != nil {
			log.Fatal(err)
		}
	}
	for kv, err := range c.Range(ctx, "svc/", client.RangeOptions{Prefix: true, PageSize: 2}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s=%s (version %d)\n", kv.Key, kv.Value, kv.Version)
	}

	r, err := c.Txn().
		If(client.KeyMissing("leader")).
		Then(client.OpPut("leader", []byte("svc/a")), client.OpDelete("svc/c")).
		Else(client.OpGet("leader")).
		Commit(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("became leader:", r.Succeeded, "deleted:", r.Results[1].Deleted)

	r, err = c.Txn().If(client.KeyMissing("leader")).Then(client.OpPut("leader", []byte("svc/b"))).Else(client.OpGet("leader")).Commit(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("second try: %v, leader is %s\n", r.Succeeded, r.Results[0].KV.Value)
	// Output:
	// svc/a=up (version 1)
	// svc/b=up (version 1)
	// svc/c=up (version 1)
	// became leader: true deleted: 1
	// second try: false, leader is svc/a
}

// A watch reports every change of its keys once, in revision order, from a
// revision the cluster still keeps; a compacted one ends it with
// ErrCompacted.
func ExampleClient_Watch() {
	c, stop := startClient()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := c.Put(ctx, "cfg/mode", []byte("blue")); err != nil {
		log.Fatal(err)
	}
	kv, err := c.GetKeyValue(ctx, "cfg/mode")
	if err != nil {
		log.Fatal(err)
	}
	// Watch from the write just made: it is reported too.
	events := c.Watch(ctx, "cfg/", client.WatchOptions{Prefix: true, Rev: kv.ModRevision})
	if err := c.Put(ctx, "cfg/mode", []byte("green")); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Delete(ctx, "cfg/mode"); err != nil {
		log.Fatal(err)
	}
	for range 3 {
		ev := <-events
		if ev.Err != nil {
			log.Fatal(ev.Err)
		}
		fmt.Printf("delete=%v %s=%s version %d\n", ev.Delete, ev.Key, ev.Value, ev.Version)
	}

	if err := c.Compact(ctx, kv.ModRevision+1); err != nil {
		log.Fatal(err)
	}
	ev := <-c.Watch(ctx, "cfg/", client.WatchOptions{Prefix: true, Rev: kv.ModRevision})
	fmt.Println("compacted:", errors.Is(ev.Err, client.ErrCompacted))
	// Output:
	// delete=false cfg/mode=blue version 1
	// delete=false cfg/mode=green version 2
	// delete=true cfg/mode= version 0
	// compacted: true
}

// A lease keeps a key alive while its owner does; a mutex built on leases
// hands each holder a fencing token that grows from one holder to the next.
func ExampleMutex() {
	c, stop := startClient()
	defer stop()
	ctx := context.Background()

	// Service registration: the key lives as long as the lease.
	lease, err := c.Grant(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.PutWithLease(ctx, "svc/web", []byte("10.0.0.1:80"), lease); err != nil {
		log.Fatal(err)
	}
	if err := c.Revoke(ctx, lease); err != nil { // or let it expire
		log.Fatal(err)
	}
	_, err = c.Get(ctx, "svc/web")
	fmt.Println("registration gone:", errors.Is(err, client.ErrNotFound))

	h, err := c.NewHolder(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close(ctx)
	m := client.NewMutex(h, "backup")
	first, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	m.Unlock(ctx)
	second, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	m.Unlock(ctx)
	fmt.Println("tokens grow:", second > first)
	// Output:
	// registration gone: true
	// tokens grow: true
}
