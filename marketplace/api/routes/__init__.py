"""The API's routes, one module per resource; none imports another (an import-linter contract).

Each module holds an ``APIRouter`` (and ``engine_router`` where a resource has routes that
exist only when this process runs the engine); ``marketplace.api.app`` mounts them. Routes
get what they share through ``marketplace.api.deps`` and answer with the models of
``marketplace.api.schemas``; errors leave as problem details (``marketplace.api.problems``).
"""
