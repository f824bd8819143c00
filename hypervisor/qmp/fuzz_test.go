package qmp

import (
	"testing"
)

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}`,
		`{"return": {}}`,
		`{"return": {"status": "running", "singlestep": false, "running": true}, "id": "shoal-1"}`,
		`{"return": [], "id": "shoal-2"}`,
		`{"error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}, "id": "shoal-3"}`,
		`{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}`,
		`{"timestamp": {"seconds": 1700000000, "microseconds": 123}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}`,
		`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "completed"}}`,
		`{"event": "STOP"}`,
		`{"return": 5, "id": 7}`,
		`{}`,
		`[]`,
		`null`,
		`{"timestamp": {"seconds": -1, "microseconds": 99999999}, "event": "X"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decodeMessage(line)
		if err != nil {
			if m.kind != 0 {
				t.Fatalf("error %v with a message kind %d", err, m.kind)
			}
			return
		}
		switch m.kind {
		case kindGreeting:
			if m.greeting == nil {
				t.Fatal("greeting without payload")
			}
		case kindReturn:
			if m.ret == nil {
				t.Fatal("return without value")
			}
		case kindError:
			if m.err == nil {
				t.Fatal("error without payload")
			}
		case kindEvent:
			if m.event.Name == "" {
				t.Fatal("event without a name")
			}
		default:
			t.Fatalf("decoded without error but kind %d", m.kind)
		}
	})
}
