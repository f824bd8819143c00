package sysmon

import (
	"fmt"
	"os"
	"time"
)

// Relax sets the timer slack of this process's sysmon thread to slack
// (DefaultSlack is the value measured for scribe) and returns its thread
// ID. Call it once, early in main; it changes no other thread.
func Relax(slack time.Duration) (int, error) {
	if slack <= 0 {
		return 0, fmt.Errorf("sysmon timer slack %v: must be positive", slack)
	}
	tid, err := find("/proc", os.Getpid())
	if err != nil {
		return 0, err
	}
	return tid, setSlack("/proc", tid, slack)
}
