"""Activities act on the world (database, HTTP, e-mail); each is idempotent under retries."""
