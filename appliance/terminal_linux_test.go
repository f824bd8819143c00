package appliance

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair and returns its terminal end.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR, 0)
	if err != nil {
		t.Skipf("open the terminal end: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

func TestMakeRawAndRestore(t *testing.T) {
	tty := openPTY(t)
	if !isTerminal(tty) || isTerminal(&bytes.Buffer{}) {
		t.Fatalf("isTerminal: want true for a pty, false for a buffer")
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	restore, err := makeRaw(tty)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if raw.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 || raw.Iflag&unix.ICRNL != 0 {
		t.Errorf("raw mode keeps echo, line editing, signals or CR translation: lflag %#x iflag %#x", raw.Lflag, raw.Iflag)
	}
	restore()
	after, _ := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("restore left %+v, want %+v", after, before)
	}
}

// On a terminal, Ctrl-] detaches: what was typed before it reaches the
// console, nothing after it.
func TestConsoleSessionDetachKey(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	got := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		p := make([]byte, 64)
		for {
			n, err := b.Read(p)
			buf.Write(p[:n])
			if err != nil || strings.Contains(buf.String(), "ls") {
				break
			}
		}
		got <- buf.String()
	}()
	s := consoleSession{conn: a, stdin: strings.NewReader("ls\x1dreboot\n"), stdout: &bytes.Buffer{}, detachKey: true}
	if end := s.run(context.Background()); end != endDetached {
		t.Errorf("session ended %v, want detached", end)
	}
	if g := <-got; g != "ls" {
		t.Errorf("console got %q, want only what came before Ctrl-]", g)
	}
}
