"""Test databases: an embedded PostgreSQL, or a throw-away database on an external server."""

from __future__ import annotations

from taflow.db.scratch import embedded_database as start_embedded
from taflow.db.scratch import external_database as external_test_database

__all__ = ["external_test_database", "start_embedded"]
