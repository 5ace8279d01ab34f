"""FastAPI service implementing HTTP API v1."""
