"""The web API: ``create_app(ApiState(...))`` in ``marketplace.api.app``; one module per resource in ``routes``."""
