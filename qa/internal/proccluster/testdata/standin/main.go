// Command standin is a STAND-IN for the shoal binary, used only by the qa
// harness's own tests until the real daemons exist. It offers two daemons,
// peer and scribe, that do what the harness can observe of a daemon and
// nothing more: each writes /run/shoal/standin-DAEMON.pid (proving the
// node's mount namespace), serves a line echo on TCP (peer on 7946, scribe
// on 7948; reply "NODE DAEMON LINE"), and sends READY=1 to NOTIFY_SOCKET
// unless /etc/shoal/standin-never-ready exists. `help --json` lists them as
// the real binary does. Two client verbs help tests look from inside a
// node: `dial ADDR` (send one line over TCP, print the reply; fails after
// 2 s) and `disk PATH read|overwrite|allocate` (one 4 KiB direct I/O,
// prints "ok" or the error), and `dhcp` (one DHCPDISCOVER on eth0, prints
// the offered address).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

var ports = map[string]string{"peer": "7946", "scribe": "7948"}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standin help --json | peer | scribe | status")
		os.Exit(2)
	}
	switch verb := os.Args[1]; verb {
	case "help":
		json.NewEncoder(os.Stdout).Encode([]map[string]any{
			{"name": "help", "summary": "list verbs", "daemon": false},
			{"name": "peer", "summary": "stand-in peer daemon", "daemon": true},
			{"name": "scribe", "summary": "stand-in scribe daemon", "daemon": true},
			{"name": "status", "summary": "stand-in status", "daemon": false},
		})
	case "status":
		entries, _ := os.ReadDir("/run/shoal")
		for _, e := range entries {
			fmt.Println(e.Name())
		}
	case "dial":
		if err := dial(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "standin dial: %v\n", err)
			os.Exit(1)
		}
	case "dhcp":
		addr, err := dhcpDiscover("eth0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "standin dhcp: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(addr)
	case "disk":
		fmt.Println(diskIO(os.Args[2], os.Args[3]))
	case "peer", "scribe":
		if err := daemon(verb); err != nil {
			fmt.Fprintf(os.Stderr, "standin %s: %v\n", verb, err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "standin: unknown verb %q\n", verb)
		os.Exit(2)
	}
}

func daemon(name string) error {
	node := os.Getenv("SHOAL_NODE_NAME")
	if err := os.WriteFile("/run/shoal/standin-"+name+".pid", fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+ports[name])
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "standin %s on %s listening on %s\n", name, node, ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s %s\n", node, name, sc.Text())
				}
			}()
		}
	}()
	if _, err := os.Stat("/etc/shoal/standin-never-ready"); err != nil {
		if sock := os.Getenv("NOTIFY_SOCKET"); sock != "" {
			c, err := net.Dial("unixgram", sock)
			if err != nil {
				return err
			}
			c.Write([]byte("READY=1"))
			c.Close()
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Fprintf(os.Stderr, "standin %s on %s stopping\n", name, node)
	return nil
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		return err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Print(reply)
	return nil
}

// diskIO does one 4 KiB I/O on path: read at 0, overwrite at 0 (allocated
// by a first write in mode ok) or write at 1 GiB (a hole).
func diskIO(path, op string) string {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "open: " + err.Error()
	}
	defer f.Close()
	buf := make([]byte, 4096)
	switch op {
	case "read":
		_, err = f.ReadAt(buf, 0)
	case "overwrite":
		_, err = f.WriteAt(buf, 0)
	case "allocate":
		_, err = f.WriteAt(buf, 1<<30)
	default:
		return "unknown op " + op
	}
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// dhcpDiscover broadcasts one DHCPDISCOVER on iface and returns the address
// of the first OFFER.
func dhcpDiscover(iface string) (net.IP, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) {
			for _, o := range []int{syscall.SO_BROADCAST, syscall.SO_REUSEADDR} {
				if serr == nil {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o, 1)
				}
			}
			if serr == nil {
				serr = syscall.BindToDevice(int(fd), iface)
			}
		})
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	xid := uint32(os.Getpid())
	msg := make([]byte, 240, 300)
	msg[0], msg[1], msg[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, MAC length
	binary.BigEndian.PutUint32(msg[4:], xid)
	binary.BigEndian.PutUint16(msg[10:], 0x8000) // broadcast reply
	copy(msg[28:], ifc.HardwareAddr)
	copy(msg[236:], []byte{99, 130, 83, 99})
	msg = append(msg, 53, 1, 1, 255)                // DHCPDISCOVER
	pc.SetDeadline(time.Now().Add(8 * time.Second)) // dnsmasq pings an address (~3 s) before its first offer
	if _, err := pc.WriteTo(msg, &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for {
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		if k >= 240 && buf[0] == 2 && binary.BigEndian.Uint32(buf[4:]) == xid {
			for i := 240; i+2 < k && buf[i] != 255; i += 2 + int(buf[i+1]) {
				if buf[i] == 53 && buf[i+2] == 2 {
					return net.IP(buf[16:20]), nil
				}
			}
			return nil, errors.New("reply is not an OFFER")
		}
	}
}
