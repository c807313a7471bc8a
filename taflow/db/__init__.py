"""Schema, sessions and queries: the only package that speaks SQL."""
