"""The early-exit encoder (`early_exit`), its artifacts on disk (`artifacts`; the spec alone, without torch:
`spec`), and tokenisation (`tokenize`). Import the submodules: this package imports nothing, so reading a
spec does not load torch."""
