package fsutil

// User is the Trust of root and uid, named for messages and fixes: Self
// for a given uid (handle_worker trusts its real uid, the nagios user).
func User(uid int) Trust {
	return Trust{UID: uid, Name: userName(uint32(uid))}
}

// Quote makes p one shell word, safe to paste and to print, as Problem
// shows paths: for fixes written outside this package.
func Quote(p string) string { return shellQuote(p) }
