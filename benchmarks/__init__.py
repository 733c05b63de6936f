"""tosaint benchmarks against the TOSA reference model: ``python -m benchmarks --help``."""
