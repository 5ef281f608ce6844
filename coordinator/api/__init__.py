"""The HTTP side: the Boruta-compatible API v1 and the operational endpoints."""
