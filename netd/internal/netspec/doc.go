// Package netspec is netd's pure logic: the desired network spec (the file
// first-boot setup writes, or the defaults when there is none), the
// observed state of the links, and Plan, which turns the two into the
// ordered list of actions that moves the links one step closer to the spec.
//
// Invariants: Plan is a pure function (no I/O, no clock), so the same spec
// and observation always give the same actions; it is golden-tested. It
// is level-triggered: when the observation already matches, the plan is
// empty. It follows the kernel's bonding rules: a NIC is set down before it
// is enslaved (as a separate action, Linux 6.1 wants separate messages), a
// NIC enslaved elsewhere is released first, and a bond whose mode must
// change is deleted and created again (the mode can only change on a bond
// that is down and has no slaves). A NIC that loses carrier stays
// enslaved: removing it would flap the bond. The LAN bridge takes its
// port's MAC (it waits a pass while the port does not exist yet), its
// port keeps no addresses, and an address moving from the port to the
// bridge is added on the bridge before it is removed from the port.
// Bridges without BridgeAlias are never named in an action.
package netspec
