package textsafe

import "testing"

func TestUnsafe(t *testing.T) {
	for _, r := range []rune{0, '\n', '\r', '\t', 0x1b, 0x7f, 0x85, 0x9f, 0x2028, 0x2029,
		0x061c, 0x200e, 0x200f, 0x202a, 0x202e, 0x2066, 0x2069} {
		if !Unsafe(r) {
			t.Errorf("U+%04X should be unsafe", r)
		}
	}
	for _, r := range []rune{' ', 'a', '|', ';', 0xa0, 0xe9, 0x200b, 0x202f, 0x2070, 0x4e2d, 0x1f600} {
		if Unsafe(r) {
			t.Errorf("U+%04X should be safe", r)
		}
	}
}
