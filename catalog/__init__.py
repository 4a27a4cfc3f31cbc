"""Iceberg REST catalog server, mounted at ``/iceberg`` in the service's app."""

from __future__ import annotations

from fastapi import FastAPI
from pyiceberg.catalog import Catalog

from tableflow.config import Settings


def create_catalog_app(catalog: Catalog, settings: Settings) -> FastAPI:
    """Placeholder until the REST catalog lands."""
    return FastAPI()


__all__ = ["create_catalog_app"]
