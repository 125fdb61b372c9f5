// CoreDNS, built from its Go module for the real node's cluster DNS (and the DNS lab's server): the same
// main as upstream's coredns.go, with every plugin of the release compiled in.
package main

import (
	_ "github.com/coredns/coredns/core/plugin"
	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
