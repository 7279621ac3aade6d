"""A catalog as Markdown: a table of every type, then per type its meaning, producers,
consumers, fields and JSON Schema, then the shared types its schemas refer to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cascade.catalog.model import CatalogEntry, schema_json

__all__ = ["render_markdown"]


def render_markdown(
    entries: Sequence[CatalogEntry], *, title: str = "Event catalog", preamble: Sequence[str] = ()
) -> str:
    """Markdown for ``entries`` in their order; ``preamble`` lines go under the title."""
    lines = [f"# {title}", ""]
    if preamble:
        lines += [*preamble, ""]
    lines += ["| type | produced by | delivered to |", "|---|---|---|"]
    for entry in entries:
        producers = ", ".join(p.describe() for p in entry.producers) or "-"
        consumers = ", ".join(c.function for c in entry.consumers) or "-"
        lines.append(f"| [`{entry.type}`](#{_anchor(entry.type)}) | {producers} | {consumers} |")
    shared: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for entry in entries:
        schema = entry.json_schema()
        lines += ["", f"## {entry.type}", "", schema.get("description", "").strip(), ""]
        produced = ", ".join(p.describe() for p in entry.producers) or "nobody"
        delivered = "; ".join(c.describe() for c in entry.consumers) or "nobody"
        lines += [f"- Produced by: {produced}", f"- Delivered to: {delivered}"]
        lines += ["", *_fields(schema, schema)]
        shared.update({name: (spec, schema) for name, spec in schema.get("$defs", {}).items()})
        lines += [
            "",
            "<details><summary>JSON Schema</summary>",
            "",
            "```json",
            schema_json(schema).rstrip("\n"),
            "```",
            "",
            "</details>",
        ]
    if shared:
        lines += ["", "## Shared types"]
    for name, (spec, schema) in sorted(shared.items()):
        lines += ["", f"### {name}", "", str(spec.get("description", "")).strip(), ""]
        lines += _fields(spec, schema)
    return "\n".join(lines) + "\n"


def _fields(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    required = set(spec.get("required", []))
    for field, prop in spec.get("properties", {}).items():
        lines.append(
            f"| `{field}` | {_type(prop, schema)} | {'yes' if field in required else 'no'} "
            f"| {_description(prop, schema)} |"
        )
    return lines


def _anchor(event_type: str) -> str:
    return event_type.replace(".", "")


def _resolve(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[str | None, Any]:
    ref = spec.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return name, schema.get("$defs", {}).get(name, {})
    return None, spec


def _type(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    name, target = _resolve(spec, schema)
    if name is not None:
        return name
    if "anyOf" in target:
        return " or ".join(_type(option, schema) for option in target["anyOf"])
    if "enum" in target:
        return " \\| ".join(f"`{value}`" for value in target["enum"])
    if "const" in target:
        return f"`{target['const']}`"
    kind = target.get("type", "any")
    if kind == "array":
        return f"list of {_type(target.get('items', {}), schema)}"
    if "format" in target:
        return f"{kind} ({target['format']})"
    return str(kind)


_LIMITS = {
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minimum": ">= {}",
    "maximum": "<= {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
    "pattern": "matches `{}`",
}


def _description(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    _, target = _resolve(spec, schema)
    parts = [str(spec.get("description") or target.get("description") or "").strip(" .")]
    if target.get("type") == "array" and "items" in target:
        _, item = _resolve(target["items"], schema)
        if item.get("type") == "object" and item.get("properties"):
            fields = ", ".join(f"`{f}`" for f in item["properties"])
            parts.append(f"each with {fields}")
    for key, template in _LIMITS.items():
        if key in target:
            parts.append(template.format(target[key]))
    if "default" in spec:
        parts.append(f"default `{spec['default']}`")
    return "; ".join(p for p in parts if p).replace("|", "\\|").replace("\n", " ")
