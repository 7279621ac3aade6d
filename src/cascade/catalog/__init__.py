"""The event catalog of a functions folder (``cascade catalog``): types, producers, consumers,
JSON Schemas, Knative EventTypes and Markdown. See :mod:`cascade.catalog.model`."""

from cascade.catalog.markdown import render_markdown
from cascade.catalog.model import (
    Catalog,
    CatalogEntry,
    Consumer,
    Producer,
    build_catalog,
    event_type_name,
    schema_file_name,
    schema_json,
)

__all__ = [
    "Catalog",
    "CatalogEntry",
    "Consumer",
    "Producer",
    "build_catalog",
    "event_type_name",
    "render_markdown",
    "schema_file_name",
    "schema_json",
]
