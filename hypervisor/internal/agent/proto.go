package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Version is the protocol version this package speaks, carried in every
// message. A receiver ignores fields and message types it does not know,
// so a version adds messages and fields; it never changes their meaning.
const Version = 1

// MaxLine bounds one encoded message, newline included.
const MaxLine = 64 << 10

// PortName is the virtio-serial port the agent opens in the guest
// (/dev/virtio-ports/PortName, or the /dev/vport* whose sysfs name it is).
const PortName = "org.shoal.agent.0"

// VsockPort is the AF_VSOCK port the agent dials on the host (CID 2). It
// is a vsock port, unrelated to the TCP/UDP ports of the node.
const VsockPort = 7949

// Message types. The agent sends hello, heartbeat and ips on its own
// (with ID 0) and a reply to every request; the host sends requests,
// each with an ID that is unique per connection.
const (
	TypeHello     = "hello"     // agent → host, on connect
	TypeHeartbeat = "heartbeat" // agent → host, every second
	TypeIPs       = "ips"       // agent → host, on connect and when the addresses change
	TypeReply     = "reply"     // agent → host, answers request ID

	TypeGetHello = "get-hello" // host → agent: reply carries Hello
	TypeGetIPs   = "get-ips"   // host → agent: reply carries IPs
	TypeShutdown = "shutdown"  // host → agent: reply, then the guest powers off
	TypeFreeze   = "fs-freeze" // host → agent: Freeze.TimeoutMS; reply carries Freeze.Filesystems
	TypeThaw     = "fs-thaw"   // host → agent: reply carries Freeze.Filesystems
)

// Message is one line of the protocol: a JSON object and a newline.
type Message struct {
	V     int    `json:"v"`
	Type  string `json:"type"`
	ID    uint64 `json:"id,omitempty"`
	Error string `json:"error,omitempty"` // replies: the request failed

	Hello     *Hello     `json:"hello,omitempty"`
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	IPs       *IPs       `json:"ips,omitempty"`
	Freeze    *Freeze    `json:"freeze,omitempty"`
}

// Hello identifies the agent and the boot it runs in.
type Hello struct {
	AgentVersion string `json:"agent_version"`
	BootID       string `json:"boot_id"`
	Hostname     string `json:"hostname"`
}

// Heartbeat says the agent is alive; Uptime is the guest's (CLOCK_BOOTTIME),
// which a live migration carries over.
type Heartbeat struct {
	Seq      uint64 `json:"seq"`
	UptimeMS int64  `json:"uptime_ms"`
}

// IPs lists the guest's addresses (loopback left out).
type IPs struct {
	Addrs []Addr `json:"addrs"`
}

// Addr is one address of a guest interface.
type Addr struct {
	Interface string       `json:"interface"`
	Prefix    netip.Prefix `json:"prefix"`
}

// Freeze is the payload of fs-freeze and fs-thaw: the request's timeout
// (after which the agent thaws by itself) and the reply's count of file
// systems frozen or thawed.
type Freeze struct {
	TimeoutMS   int64 `json:"timeout_ms,omitempty"`
	Filesystems int   `json:"filesystems"`
}

// check reports why m is not a valid message.
func (m Message) check() error {
	switch {
	case m.V < 1:
		return fmt.Errorf("%w: version %d", ErrMalformed, m.V)
	case m.Type == "":
		return fmt.Errorf("%w: no type", ErrMalformed)
	case m.Type == TypeHello && m.Hello == nil:
		return fmt.Errorf("%w: hello without payload", ErrMalformed)
	case m.Type == TypeHeartbeat && m.Heartbeat == nil:
		return fmt.Errorf("%w: heartbeat without payload", ErrMalformed)
	case m.Type == TypeIPs && m.IPs == nil:
		return fmt.Errorf("%w: ips without payload", ErrMalformed)
	case m.Type == TypeReply && m.ID == 0:
		return fmt.Errorf("%w: reply without id", ErrMalformed)
	case m.Freeze != nil && (m.Freeze.TimeoutMS < 0 || m.Freeze.Filesystems < 0):
		return fmt.Errorf("%w: negative freeze figures", ErrMalformed)
	}
	return nil
}

// Encode writes m as one line in one Write call.
func Encode(w io.Writer, m Message) error {
	if m.V == 0 {
		m.V = Version
	}
	if err := m.check(); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	b = append(b, '\n')
	if len(b) > MaxLine {
		return fmt.Errorf("%w: %s message of %d bytes", ErrTooLong, m.Type, len(b))
	}
	_, err = w.Write(b)
	return err
}

// Decoder reads messages from a stream, one a line.
type Decoder struct {
	r *bufio.Reader
}

// NewDecoder reads from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, MaxLine)}
}

// Next returns the next message. Errors wrapping ErrMalformed or
// ErrTooLong concern one line, which is skipped: call Next again. Other
// errors (io.EOF at the end) end the stream. Blank lines are skipped.
func (d *Decoder) Next() (Message, error) {
	for {
		line, err := d.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = d.r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return Message{}, err
			}
			return Message{}, fmt.Errorf("%w: over %d bytes", ErrTooLong, MaxLine)
		}
		if err != nil && (!errors.Is(err, io.EOF) || len(line) == 0) {
			return Message{}, err
		}
		// A last line without its newline is cut short: it is decoded
		// all the same, a peer that went away mid-line yields a malformed
		// message at worst.
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m Message
		if jerr := json.Unmarshal(line, &m); jerr != nil {
			return Message{}, fmt.Errorf("%w: %v", ErrMalformed, jerr)
		}
		if cerr := m.check(); cerr != nil {
			return Message{}, cerr
		}
		return m, nil
	}
}
