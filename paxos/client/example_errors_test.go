package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

// A write's error says whether it may have been applied. Here no member is
// listening, so nothing was sent and the put certainly did not happen.
func ExampleClient_Put_errors() {
	c, err := client.New("127.0.0.1:1")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	err = c.Put(ctx, "k", []byte("v"))
	switch {
	case errors.Is(err, client.ErrNotApplied):
		fmt.Println("not applied: safe to retry as a new write")
	case errors.Is(err, client.ErrUnknownOutcome):
		fmt.Println("may have been applied: read before retrying")
	}
	// Output: not applied: safe to retry as a new write
}
