"""Generate the chart's ``eventTypes:`` values from the shop's event catalog (cascade.catalog).

One entry per type of ``functions.shop.events.SHOP_EVENTS``, in saga order: the type, the
``source`` of its producer (``/<function>``, the runtime's default CloudEvents source of replies
and of events published to K_SINK), a description from the model's docstring, and the
attributes every shop event carries (``subject`` = ``partitionkey`` = the order id, see
``functions.shop.events.keyed``). The chart renders one ``EventType``
(eventing.knative.dev/v1beta3) per entry.

    python scripts/event_types.py            print the block
    python scripts/event_types.py --write    rewrite it in charts/cascade/values.yaml
    python scripts/event_types.py --check    exit 1 when values.yaml differs (tests run this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "charts" / "cascade" / "values.yaml"
BEGIN = "# BEGIN GENERATED eventTypes"
END = "# END GENERATED eventTypes"

__all__ = ["BEGIN", "END", "VALUES", "block", "event_types", "replace_block"]


KEYED_BY_ORDER: tuple[dict[str, object], ...] = (
    {"name": "subject", "value": "{order_id}", "required": True},
    {"name": "partitionkey", "value": "{order_id}", "required": True},
)


def event_types(root: Path = ROOT) -> list[dict[str, object]]:
    """``[{type, source, description, attributes}]`` for every shop event, from
    :func:`cascade.catalog.build_catalog` (what ``cascade catalog`` reads)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from cascade.catalog import build_catalog
    from functions.shop.events import SHOP_EVENTS

    catalog = build_catalog(root / "functions")
    entries = []
    for entry in catalog.ordered(SHOP_EVENTS):
        sources = {p.function: p.source for p in entry.producers}
        if len(sources) != 1:
            names = sorted(sources.values())
            raise SystemExit(
                f"{entry.type}: expected one producing function, found {names or 'none'}"
            )
        [source] = sources.values()
        entries.append(
            {
                "type": entry.type,
                "source": source,
                "description": f"{entry.summary} Produced by {source.lstrip('/')}.".strip(),
                "attributes": list(KEYED_BY_ORDER),
            }
        )
    return entries


def block(entries: list[dict[str, object]]) -> str:
    """The generated lines of values.yaml, markers included (JSON scalars are valid YAML)."""
    lines = [BEGIN, "eventTypes:"]
    for entry in entries:
        lines.append(f"  - type: {json.dumps(entry['type'])}")
        lines.append(f"    source: {json.dumps(entry['source'])}")
        lines.append(f"    description: {json.dumps(entry['description'])}")
        lines.append("    attributes:")
        for attribute in entry["attributes"]:  # type: ignore[attr-defined]
            name, value = json.dumps(attribute["name"]), json.dumps(attribute["value"])
            required = json.dumps(attribute["required"])
            lines.append(f"      - {{name: {name}, value: {value}, required: {required}}}")
    lines.append(END)
    return "\n".join(lines) + "\n"


def replace_block(text: str, new_block: str) -> str:
    """``text`` with the lines from BEGIN to END (inclusive) replaced by ``new_block``."""
    start = text.find(BEGIN + "\n")
    end = text.find(END + "\n")
    if start < 0 or end < start:
        raise SystemExit(f"{VALUES}: markers '{BEGIN}' ... '{END}' not found")
    return text[:start] + new_block + text[end + len(END) + 1 :]


def main(argv: list[str]) -> int:
    generated = block(event_types())
    if not argv:
        sys.stdout.write(generated)
        return 0
    current = VALUES.read_text(encoding="utf-8")
    wanted = replace_block(current, generated)
    if argv == ["--check"]:
        if current != wanted:
            print(
                f"{VALUES.relative_to(ROOT)}: eventTypes differ from functions/shop; "
                "run `python scripts/event_types.py --write`",
                file=sys.stderr,
            )
            return 1
        return 0
    if argv == ["--write"]:
        VALUES.write_text(wanted, encoding="utf-8")
        return 0
    print("usage: python scripts/event_types.py [--check | --write]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
