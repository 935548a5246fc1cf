"""Shared fixtures for the CLI tiers (the package is installed by `make venv`)."""
