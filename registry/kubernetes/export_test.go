package kubernetes

// SetTestHooks sets the watch timeout (seconds) and the 410 Gone hook
// for a test, and returns a function that restores them. No watch may
// run while it is called.
func SetTestHooks(timeoutSeconds int64, onGone func()) (restore func()) {
	oldT, oldG := watchTimeoutSeconds, testHookGone
	watchTimeoutSeconds = func() int64 { return timeoutSeconds }
	testHookGone = onGone
	return func() { watchTimeoutSeconds, testHookGone = oldT, oldG }
}
