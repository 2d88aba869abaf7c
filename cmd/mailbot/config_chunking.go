package main

// chunkingOff reports whether the account turned CHUNKING off with
// "chunking: false". By default mailbot sends with BDAT (RFC 3030)
// whenever the server offers CHUNKING and PIPELINING: one round trip per
// message instead of two. The switch is for a relay whose BDAT is broken;
// it applies to scripts' connections with the account and to the outbox.
// The YAML decoder already refuses anything but a boolean, with its line.
func (a *AccountConfig) chunkingOff() bool {
	return a.Chunking != nil && !*a.Chunking
}
