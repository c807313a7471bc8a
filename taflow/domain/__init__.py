"""Shared types and reference enums; importable from workflows (no I/O here)."""
