package imagebuild

import "errors"

// ErrNeedsRoot is returned by Build when not run as root.
var ErrNeedsRoot = errors.New("building the image needs root (debootstrap and chroot); run it as root")
