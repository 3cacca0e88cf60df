"""Test helpers shared by tests and benchmarks: scene builders, fakes, a tiny SAM."""
