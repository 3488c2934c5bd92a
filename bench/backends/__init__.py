"""Backends: what builds and runs a convolution. Heavy modules are imported lazily."""
