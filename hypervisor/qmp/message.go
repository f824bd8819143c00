package qmp

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Greeting is what QEMU sends when a client connects.
type Greeting struct {
	Version struct {
		QEMU struct {
			Major int `json:"major"`
			Minor int `json:"minor"`
			Micro int `json:"micro"`
		} `json:"qemu"`
		Package string `json:"package"`
	} `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// Event is an asynchronous QMP event (STOP, RESUME, SHUTDOWN, MIGRATION…).
type Event struct {
	Name string          // e.g. "SHUTDOWN"
	Data json.RawMessage // the event's "data" object, or nil
	Time time.Time       // QEMU's timestamp
}

// message is one decoded line of the QMP stream: exactly one of greeting,
// reply (return or error) or event.
type message struct {
	kind     messageKind
	greeting *Greeting
	id       string
	ret      json.RawMessage
	err      *Error
	event    Event
}

type messageKind int

const (
	kindGreeting messageKind = iota + 1
	kindReturn
	kindError
	kindEvent
)

type wireMessage struct {
	QMP    *Greeting       `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	ID        json.RawMessage `json:"id"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

var errUnknownMessage = errors.New("neither greeting, return, error nor event")

// decodeMessage decodes one line of the QMP stream.
func decodeMessage(line []byte) (message, error) {
	var w wireMessage
	if err := json.Unmarshal(line, &w); err != nil {
		return message{}, fmt.Errorf("decode qmp message: %w", err)
	}
	var id string
	if len(w.ID) > 0 && string(w.ID) != "null" {
		// We send string ids; anything else is echoed verbatim and
		// matches nothing.
		if err := json.Unmarshal(w.ID, &id); err != nil {
			id = string(w.ID)
		}
	}
	switch {
	case w.Error != nil:
		return message{kind: kindError, id: id, err: &Error{Class: w.Error.Class, Desc: w.Error.Desc}}, nil
	case w.Return != nil:
		return message{kind: kindReturn, id: id, ret: w.Return}, nil
	case w.Event != "":
		ev := Event{Name: w.Event}
		if len(w.Data) > 0 && string(w.Data) != "null" {
			ev.Data = w.Data
		}
		if ts := w.Timestamp; ts != nil && ts.Seconds >= 0 && ts.Microseconds >= 0 && ts.Microseconds < 1e6 {
			ev.Time = time.Unix(ts.Seconds, ts.Microseconds*1000)
		}
		return message{kind: kindEvent, event: ev}, nil
	case w.QMP != nil:
		return message{kind: kindGreeting, greeting: w.QMP}, nil
	}
	return message{}, fmt.Errorf("decode qmp message %.80q: %w", line, errUnknownMessage)
}
