// Command echofloor measures the floor of a machine for latch's
// one-call-per-connection benchmarks: how many round trips per second N
// connections between two processes on loopback make when the server does
// nothing but echo. latch's figures with one session per client are read
// against it (docs/benchmarks.md).
//
//	go run ./cmd/internal/echofloor -conns 64 -duration 5s
//
// It starts itself again as the echo server (-serve), so that client and
// server are two processes, as with `latch bench` and latchd.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.Bool("serve", false, "run as the echo server: print the listening address, echo until stdin closes")
	conns := flag.Int("conns", 64, "connections, each with one message in flight")
	size := flag.Int("size", 64, "message size in bytes")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure")
	flag.Parse()
	if *conns <= 0 || *size <= 0 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "echofloor: -conns, -size and -duration must be positive")
		os.Exit(2)
	}
	if *serve {
		if err := runServer(*size); err != nil {
			fmt.Fprintln(os.Stderr, "echofloor server:", err)
			os.Exit(1)
		}
		return
	}
	n, err := runClient(*conns, *size, *duration)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echofloor:", err)
		os.Exit(1)
	}
	fmt.Printf("{\"conns\":%d,\"size\":%d,\"seconds\":%.1f,\"roundTrips\":%d,\"perSec\":%.0f}\n",
		*conns, *size, duration.Seconds(), n, float64(n)/duration.Seconds())
}

// runServer listens on a free loopback port, prints its address, and
// echoes size-byte messages on every connection until stdin closes.
func runServer(size int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin) // the parent went away
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// runClient starts the server process, then runs conns connections for d,
// each writing a message and reading the echo back, and returns the
// number of round trips.
func runClient(conns, size int, d time.Duration) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	srv := exec.Command(self, "-serve", "-size", fmt.Sprint(size))
	stdin, err := srv.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		return 0, err
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() {
		stdin.Close()
		srv.Wait()
	}()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reading the server's address: %w", err)
	}
	addr = addr[:len(addr)-1]

	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	stop := time.Now().Add(d)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, size)
			for time.Now().Before(stop) {
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return n.Load(), err
	default:
	}
	return n.Load(), nil
}
