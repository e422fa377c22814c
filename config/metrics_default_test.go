package config_test

import (
	"testing"

	"exitd/config"
	"exitd/metrics"
)

// The default config documents is the one the metrics server uses.
func TestDefaultMetricsListenMatchesServer(t *testing.T) {
	if config.DefaultMetricsListen != metrics.DefaultListen {
		t.Errorf("config.DefaultMetricsListen = %q, metrics.DefaultListen = %q", config.DefaultMetricsListen, metrics.DefaultListen)
	}
}
