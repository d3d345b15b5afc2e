package etcd_test

const registrantEnv = "WAYFINDER_ETCD_TEST_REGISTRANT"

func runRegistrant() int { return 0 }
