// The seed's TCP echo server in Go, as the ready example of an external server for
// scripts/compare.sh. Two of its bugs are fixed: it echoes the bytes read (d[:n]), not the
// whole 100-byte buffer, and an accept error (such as running out of file descriptors) is
// logged and retried instead of ending the server. Per-message logging is off: it would be
// measured as server cost.
//
//	go run ./examples/seed-go -addr 127.0.0.1:8000
package main

import (
	"flag"
	"log"
	"net"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("Error listener returned: %s", err)
	}
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			log.Printf("Error to accept new connection: %s", err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			d := make([]byte, 4096)
			for {
				n, err := c.Read(d)
				if err != nil {
					return
				}
				if _, err = c.Write(d[:n]); err != nil {
					return
				}
			}
		}()
	}
}
