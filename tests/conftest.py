"""Shared fixtures. Fixture modules of each area live beside this file."""

pytest_plugins = ["s3_fixtures", "gpu_fixtures"]
