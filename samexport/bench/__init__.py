"""`samexport bench`: encoder and decoder latency and memory per device, with out-of-memory verdicts."""
