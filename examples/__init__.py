"""Examples of baserepo in use; a package so that ``examples.fastapi_app`` imports by path."""
