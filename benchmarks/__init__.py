"""Benchmarks of hf_mtl against the alternatives (see benchmarks/README.md). Not part of the package."""
