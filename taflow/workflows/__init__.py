"""Workflows decide; they never do I/O (see DESIGN section 6)."""
