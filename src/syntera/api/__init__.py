"""The HTTP API: the FastAPI application, its dependencies and its error mapping."""
