"""Fixtures for the GPU backend tests (tiny pipelines)."""
