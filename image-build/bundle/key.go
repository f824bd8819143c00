package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
)

const (
	publicTag  = "shoal-update-public-v1"
	privateTag = "shoal-update-private-v1"
)

// GenerateKey makes a key pair and returns both as key file text.
func GenerateKey(rand io.Reader) (public, private []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate update key: %w", err)
	}
	return MarshalPublicKey(pub), fmt.Appendf(nil, "%s %s\n", privateTag, base64.StdEncoding.EncodeToString(priv.Seed())), nil
}

// MarshalPublicKey encodes a public key as key file text.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	return fmt.Appendf(nil, "%s %s\n", publicTag, base64.StdEncoding.EncodeToString(pub))
}

func parseKey(text []byte, tag string, size int) ([]byte, error) {
	fields := bytes.Fields(text)
	if len(fields) != 2 || string(fields[0]) != tag {
		return nil, fmt.Errorf("%w: want one line %q followed by base64", ErrBadKey, tag)
	}
	raw, err := base64.StdEncoding.DecodeString(string(fields[1]))
	if err != nil || len(raw) != size {
		return nil, fmt.Errorf("%w: want %d bytes of base64 after %q", ErrBadKey, size, tag)
	}
	return raw, nil
}

// ParsePublicKey reads a public key file.
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	raw, err := parseKey(text, publicTag, ed25519.PublicKeySize)
	return ed25519.PublicKey(raw), err
}

// ParsePrivateKey reads a private key file.
func ParsePrivateKey(text []byte) (ed25519.PrivateKey, error) {
	raw, err := parseKey(text, privateTag, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(raw), nil
}
