package shred

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// The Redis store once wrote records in a compact binary form, and records
// it has not rewritten since are still stored so. UnmarshalRecord reads them;
// nothing writes them any more, and the store rewrites one in the JSON form
// when its data changes. The layout:
//
//	compactVersion | digest, 32 bytes | end ordinal, int64 big-endian |
//	length of the clear JSON, uint32 big-endian | clear JSON | sealed part
//
// A JSON record starts with '{', never with compactVersion.
const (
	compactVersion   = 0x01
	compactHeaderLen = 1 + sha256.Size + 8 + 4
)

// unmarshalCompact reads a record in the compact form.
func unmarshalCompact(b []byte) (Record, error) {
	if len(b) < compactHeaderLen {
		return Record{}, fmt.Errorf("decode subscription record: %d bytes is too short for the compact form", len(b))
	}
	n := binary.BigEndian.Uint32(b[compactHeaderLen-4:])
	if uint64(n) > uint64(len(b)-compactHeaderLen) {
		return Record{}, fmt.Errorf("decode subscription record: the clear part's length %d runs past the record's end", n)
	}
	clear := b[compactHeaderLen : compactHeaderLen+int(n)]
	return Record{
		Digest: hex.EncodeToString(b[1 : 1+sha256.Size]),
		End:    int64(binary.BigEndian.Uint64(b[1+sha256.Size:])),
		Clear:  bytes.Clone(clear),
		Sealed: bytes.Clone(b[compactHeaderLen+int(n):]),
	}, nil
}
