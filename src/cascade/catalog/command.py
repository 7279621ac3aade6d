"""``cascade catalog``: the event catalog of a functions folder, printed or written to files."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
import yaml

from cascade.catalog.markdown import render_markdown
from cascade.catalog.model import (
    EVENT_TYPE_APIS,
    Catalog,
    EventTypeApi,
    build_catalog,
    schema_file_name,
    schema_json,
)

__all__ = ["catalog"]

FORMATS: Final = ("eventtypes", "schemas", "markdown")


@click.command("catalog")
@click.argument(
    "functions_dir",
    default=Path("functions"),
    type=click.Path(path_type=Path),
)
@click.option(
    "-f",
    "--manifests",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Knative manifests (file or folder; repeatable) whose Triggers say who receives "
    "each type. Without them the catalog has producers only.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="eventtypes",
    show_default=True,
    help="What to print: Knative EventType objects (YAML), the JSON Schemas (one JSON "
    "object keyed by type) or Markdown.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write every format into this folder instead of printing one: eventtypes.yaml, "
    "schemas/<type>.schema.json, events.md.",
)
@click.option(
    "--event-type-api",
    type=click.Choice(EVENT_TYPE_APIS),
    default="v1beta2",
    show_default=True,
    help="EventType version: v1beta2 (type, source; what Knative 1.20 stores and the chart "
    "renders) or v1beta3 (attributes).",
)
@click.option(
    "--broker",
    default="default/default",
    show_default=True,
    help="NAMESPACE/NAME of the Broker the EventTypes reference.",
)
def catalog(
    functions_dir: Path,
    manifests: tuple[Path, ...],
    output_format: str,
    output: Path | None,
    event_type_api: EventTypeApi,
    broker: str,
) -> None:
    """Print the event catalog of FUNCTIONS_DIR (default: ./functions).

    Every <name>/func.py of the folder is imported as `cascade serve` would; the types are
    what its handlers take, the replies they declare and the models it lists in PUBLISHES,
    each with the JSON Schema of its pydantic model.

    \b
    cascade catalog functions -f k8s/rendered/shop.yaml --format markdown
    cascade catalog functions --broker shop/default > eventtypes.yaml
    cascade catalog functions -o build/catalog
    """
    namespace, _, name = broker.rpartition("/")
    if not name or not namespace:
        raise click.BadParameter("expected NAMESPACE/NAME", param_hint="--broker")
    from cascade.broker.topology import ManifestError
    from cascade.discovery import DiscoveryError

    try:
        found = build_catalog(functions_dir, manifests=manifests)
    except (DiscoveryError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None
    if not found.entries:
        raise click.ClickException(
            f"{functions_dir}: its functions handle, reply or publish no event types"
        )
    if output is None:
        click.echo(_render(found, output_format, (namespace, name), event_type_api), nl=False)
        return
    _write(found, output, (namespace, name), event_type_api)
    click.echo(f"wrote {len(found.entries)} event types to {output}", err=True)


def _render(found: Catalog, output_format: str, broker: tuple[str, str], api: EventTypeApi) -> str:
    if output_format == "schemas":
        return schema_json(found.json_schemas())
    if output_format == "markdown":
        return render_markdown(found.entries)
    objects = found.event_types(namespace=broker[0], broker=broker[1], api=api)
    return yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=False)


def _write(found: Catalog, output: Path, broker: tuple[str, str], api: EventTypeApi) -> None:
    schemas = output / "schemas"
    names: dict[str, str] = {}
    for entry in found.entries:
        file_name = schema_file_name(entry.type)
        if file_name in names:
            raise click.ClickException(
                f"types {names[file_name]!r} and {entry.type!r} would share {file_name}"
            )
        names[file_name] = entry.type
    try:
        schemas.mkdir(parents=True, exist_ok=True)
        for file_name, event_type in names.items():
            (schemas / file_name).write_text(
                schema_json(found.entry(event_type).json_schema()), encoding="utf-8"
            )
        (output / "eventtypes.yaml").write_text(
            _render(found, "eventtypes", broker, api), encoding="utf-8"
        )
        (output / "events.md").write_text(render_markdown(found.entries), encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write the catalog: {exc}") from None
