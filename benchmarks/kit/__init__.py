"""What the tests and the benchmarks share: the sample ledger (a step hook, and how its
files are read), the skewed streams the fault tests and the soak run, and stragglers
(SIGSTOP of a rank). A test or a benchmark imports these; neither imports the other's
modules for them."""
