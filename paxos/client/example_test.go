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
