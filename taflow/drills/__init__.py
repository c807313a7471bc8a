"""Fault drills (`make drills`, `python -m taflow.drills`): a throw-away stack, real load, real faults.

`stack.Stack` starts its own embedded PostgreSQL, Temporal dev server (SQLite file), worker and API
on free loopback ports in a temporary directory, and can kill, stop and restart each of them.
`driver` walks requests through the HTTP API from submission to completion, retrying as a client
would; `checks` proves afterwards that nothing was lost or doubled. The benchmarks reuse all three.
"""
