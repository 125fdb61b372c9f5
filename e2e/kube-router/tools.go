//go:build tools

// The real node's NetworkPolicy enforcer: kube-router's firewall alone (`--run-firewall`, iptables and
// ipset), built from its Go module by build-kube-router.sh. Pinned to v2.1.0, the only version the Go
// module proxy serves here; security flaws are reported against it, so it runs only in the test node.
package kuberouter

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
