package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

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
	endpoints, stop := startCluster()
	defer stop()
	c, err := client.New(endpoints...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
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
