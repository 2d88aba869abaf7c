//go:build !linux

package outbox

import "os"

// syncBatch flushes the directories the batch renamed into; the files
// themselves were fsynced before the rename (syncBeforeRename).
func syncBatch(_ *os.File, _ []string, dirs []string) error {
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

const syncBeforeRename = true
