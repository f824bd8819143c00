//go:build qa

package qa_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// BenchmarkVM prints issue 10's figures, measured on one 3-node cluster
// with one VM (the test guest under TCG): create to the first agent
// heartbeat; live migration pre-copy and post-copy, total time and
// downtime as QEMU reports them; failover from the node kill to the
// agent's heartbeat on the new node. Run it once (`make bench`, root):
//
//	go test -tags qa -run '^$' -bench VM -benchtime 1x ./qa/
func BenchmarkVM(b *testing.B) {
	s := newVMScene(b)
	pre := s.migrate(false)
	post := s.migrate(true)
	fail := s.failover()
	load, _ := os.ReadFile("/proc/loadavg")
	// Printed, not logged: a benchmark's log is cut to its first lines.
	fmt.Printf(`
vm figures (3 nodes, TCG, load average %s)
| figure                                         | measured |
|------------------------------------------------|----------|
| create to agent heartbeat                      | %.1f s |
| live migration pre-copy: total / downtime      | %d ms / %d ms (%.1f MiB sent) |
| live migration post-copy: total / downtime     | %d ms / %d ms (post-copy ran: %v) |
| failover: node kill to agent heartbeat         | %.1f s |
`,
		strings.Join(strings.Fields(string(load))[:3], " "), s.createToHeartbeat.Seconds(),
		pre.TotalMS, pre.DowntimeMS, float64(pre.Transferred)/(1<<20), post.TotalMS, post.DowntimeMS, post.Postcopy, fail.Seconds())
	b.ReportMetric(s.createToHeartbeat.Seconds(), "create-to-heartbeat-s")
	b.ReportMetric(float64(pre.TotalMS), "precopy-total-ms")
	b.ReportMetric(float64(pre.DowntimeMS), "precopy-downtime-ms")
	b.ReportMetric(float64(post.TotalMS), "postcopy-total-ms")
	b.ReportMetric(float64(post.DowntimeMS), "postcopy-downtime-ms")
	b.ReportMetric(fail.Round(10*time.Millisecond).Seconds(), "failover-s")
}
