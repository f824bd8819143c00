// Package imagebuild builds the bootable appliance image (GPT, systemd-boot,
// unified kernel images, A/B read-only root slots) and signed update bundles.
package imagebuild
