package outbox

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestLockedFileRead checks the single-read load of a locked spool file:
// whole files decode, cut or padded ones are reported torn, and a missing
// file is fs.ErrNotExist (which delivery treats as "done elsewhere").
func TestLockedFileRead(t *testing.T) {
	it := Item{ID: "0000000000000a-00000001", Seq: 1, State: StateQueued, Account: "default", To: []string{"a@x"}}
	data := testMsg(1)
	whole, err := encodeFile(&it, data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte
		torn    bool
	}{
		{"whole", whole, false},
		{"cut", whole[:len(whole)-3], true},
		{"padded", append(append([]byte(nil), whole...), 'x'), true},
		{"empty", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), it.ID)
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			lf, err := lockFile(p)
			if err != nil {
				t.Fatalf("lockFile: %v", err)
			}
			defer lf.unlock()
			got, b, err := lf.read()
			if tc.torn {
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("read = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil || got.ID != it.ID || string(b) != string(data) {
				t.Errorf("read = %+v, %q, %v", got, b, err)
			}
		})
	}
	if _, err := lockFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lockFile(missing) = %v, want fs.ErrNotExist", err)
	}
}
