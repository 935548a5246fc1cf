"""Thin adapters, one per external system, around injected clients."""
