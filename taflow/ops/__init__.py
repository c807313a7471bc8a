"""Repair tools behind `taflow requests show`, `signal`, `reproject`, `replay` and `histories export`.

Each is an async function over a Temporal client (and a sessionmaker where the read model is
written), so tests call them directly and the CLI wraps them in `asyncio.run`.
"""
