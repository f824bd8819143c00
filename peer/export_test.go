package peer

// JoinGossip lets tests make a node contact gossip addresses directly.
func (p *Peer) JoinGossip(addrs []string) error {
	s := p.serfInstance()
	if s == nil {
		return ErrNotMember
	}
	_, err := s.Join(addrs, false)
	return err
}

// CallMember lets tests call another node's node API with this node's
// certificate.
var CallMember = (*Peer).callMember
