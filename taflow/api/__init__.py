"""HTTP in, workflow messages out: the FastAPI application (`create_app`)."""
