package softhsmtests

func printBenchSummary() {}
