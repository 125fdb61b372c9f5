//go:build tools

// Package tools pins the Prometheus server and promtool that the e2e tests build from their Go module
// (e2e/build-prometheus.sh): no binary download, the same sources every time.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
