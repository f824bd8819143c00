// Package qa is the multi-node test harness: clusters of real shoal
// processes, fault injection, checkers and scenarios. Scenarios are behind
// the qa build tag. This package also holds the repository's guardrail tests.
package qa
