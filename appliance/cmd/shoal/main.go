// Command shoal is the one host binary of the Shoal appliance: every daemon
// and every CLI verb. This file only maps verbs to functions.
package main

import (
	"os"

	"github.com/shoal-hci/shoal/appliance"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

var verbs = []verb.Verb{
	{Name: "version", Summary: "print the version, commit and Go version (--json)", Run: appliance.Version},
}

func main() { os.Exit(verb.Main(verbs)) }
