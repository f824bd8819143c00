package netd

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCarrierToLease measures, against dnsmasq in a namespace, the
// time from the cable being plugged (the switch side of the veth going
// up, dnsmasq serving on the switch's bridge all along) to a bound lease in netd's status: carrier-to-bound-ms (what a
// person waits) and dora-ms (from the DHCP client seeing carrier to the
// ACK).
func BenchmarkCarrierToLease(b *testing.B) {
	for range b.N {
		l := newLabOpts(b, true)
		l.startDnsmasq(b, "10.77.0.50", "10.77.0.99", 0, 0)
		run(b, "ip", "-n", l.srv, "link", "set", "srv0", "down")
		l.startNetd(b)
		l.waitStatus(b, "netd waiting for carrier", 20*time.Second, func(s Status) bool { return s.Phase == PhaseCarrier })
		plugged := time.Now()
		run(b, "ip", "-n", l.srv, "link", "set", "srv0", "up")
		st := l.waitStatus(b, "a bound lease", 30*time.Second, bound)
		d := lanDHCP(st)
		b.ReportMetric(float64(d.BoundAt.Sub(plugged).Microseconds())/1000, "carrier-to-bound-ms")
		b.ReportMetric(float64(d.BoundAt.Sub(d.CarrierAt).Microseconds())/1000, "dora-ms")
		if testing.Verbose() {
			b.Logf("plugged at %s\n%s", plugged.Format("15:04:05.000"), l.logs())
		}
		l.stopNetd(b)
		l.stopDnsmasq(b)
		exec.Command("rm", "-rf", filepath.Join(l.dir, "state")).Run()
	}
}
