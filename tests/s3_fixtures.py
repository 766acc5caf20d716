"""Fixtures for the S3 store tests (Ceph RADOS Gateway)."""
