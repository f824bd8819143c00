package placement

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"sort"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Disk is a candidate disk.
type Disk struct {
	Node string
	ID   chunkstore.ID
	// Free is the disk's free space in bytes; disks with none are skipped.
	Free int64
}

// score is the rendezvous score of disk d for (vsd, extent).
func score(d Disk, vsd chunkstore.ID, extent uint64) float64 {
	h := fnv.New64a()
	h.Write(vsd[:])
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], extent)
	h.Write(b[:])
	h.Write(d.ID[:])
	x := mix(h.Sum64())
	// u in (0, 1): 53 random bits, never 0.
	u := (float64(x>>11) + 0.5) / (1 << 53)
	return float64(d.Free) / -math.Log(u)
}

// mix is the splitmix64 finaliser: FNV's low bits are poorly spread.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// ranked returns the disks with free space, best score first (ties broken
// by disk ID so the order is total).
func ranked(disks []Disk, vsd chunkstore.ID, extent uint64) []Disk {
	type scored struct {
		d Disk
		s float64
	}
	var ss []scored
	for _, d := range disks {
		if d.Free > 0 {
			ss = append(ss, scored{d, score(d, vsd, extent)})
		}
	}
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].s != ss[j].s {
			return ss[i].s > ss[j].s
		}
		return string(ss[i].d.ID[:]) < string(ss[j].d.ID[:])
	})
	out := make([]Disk, len(ss))
	for i, s := range ss {
		out[i] = s.d
	}
	return out
}

// Choose returns up to n disks for extent of vsd, each on a different
// node, best first. It returns fewer when fewer nodes have free space.
func Choose(disks []Disk, vsd chunkstore.ID, extent uint64, n int) []Disk {
	return pick(disks, vsd, extent, n, nil)
}

// ChooseNear is Choose with data locality: the first replica goes to the
// best disk of node (the node that will serve the VSD, so its reads stay
// on the node and each write crosses the network once) and the others as
// Choose places them on the other nodes. Locality yields to balance: when
// node's freest disk has less than half the mean free space of the disks
// with any, or node has no disk with free space, ChooseNear is Choose.
func ChooseNear(disks []Disk, vsd chunkstore.ID, extent uint64, n int, node string) []Disk {
	var (
		sum, cnt int64
		best     int64
		local    []Disk
	)
	for _, d := range disks {
		if d.Free <= 0 {
			continue
		}
		sum += d.Free
		cnt++
		if d.Node == node {
			local = append(local, d)
			best = max(best, d.Free)
		}
	}
	if n <= 0 || len(local) == 0 || 2*best*cnt < sum {
		return Choose(disks, vsd, extent, n)
	}
	first := ranked(local, vsd, extent)[0]
	return append([]Disk{first}, pick(disks, vsd, extent, n-1, []Disk{first})...)
}

// Replace returns the disk that should take a replica of extent when one
// is lost: the best disk on a node that holds none of the extent's other
// replicas (held). ok is false when no such disk has free space.
func Replace(disks []Disk, vsd chunkstore.ID, extent uint64, held []Disk) (d Disk, ok bool) {
	got := pick(disks, vsd, extent, 1, held)
	if len(got) == 0 {
		return Disk{}, false
	}
	return got[0], true
}

func pick(disks []Disk, vsd chunkstore.ID, extent uint64, n int, held []Disk) []Disk {
	used := map[string]bool{}
	for _, h := range held {
		used[h.Node] = true
	}
	var out []Disk
	for _, d := range ranked(disks, vsd, extent) {
		if len(out) == n {
			break
		}
		if used[d.Node] {
			continue
		}
		used[d.Node] = true
		out = append(out, d)
	}
	return out
}
