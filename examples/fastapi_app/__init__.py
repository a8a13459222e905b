"""A FastAPI application on baserepo: session per request, a repository dependency, error
handlers that map baserepo's errors to HTTP, and a bulk import that returns its
``BulkOperationResult``. docs/fastapi.md walks through it.

    uvicorn examples.fastapi_app.main:app

Modules: ``settings`` (environment), ``models`` (the table), ``schemas`` (request and response
bodies, the filter whitelist), ``db`` (engine, cache and the dependencies), ``errors`` (error
handlers), ``routes`` (the endpoints), ``main`` (the app factory and its lifespan).
"""
