"""Generate the chart's ``eventTypes:`` values from the shop's event contracts.

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
    """``[{type, source, description}]`` for every shop event, producers read from the code."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from cascade.events import bound_type
    from cascade.loader import load_module
    from functions.shop.events import SHOP_EVENTS

    producers: dict[str, list[str]] = {}  # type -> sources of the functions producing it
    for folder in sorted(p.parent for p in (root / "functions").glob("*/func.py")):
        module = load_module(folder)
        name = module.fn.source or f"/{module.fn.name}"
        published = {bound_type(model) for model in getattr(module, "PUBLISHES", ())}
        for event_type in sorted(set(module.fn.produces()) | published):
            producers.setdefault(event_type, []).append(name)
    entries = []
    for model in SHOP_EVENTS:
        event_type = bound_type(model)
        names = producers.get(event_type, [])
        if len(names) != 1:
            raise SystemExit(
                f"{event_type}: expected one producing function, found {names or 'none'}"
            )
        summary = " ".join((model.__doc__ or "").split()).replace("``", "`")
        entries.append(
            {
                "type": event_type,
                "source": names[0],
                "description": f"{summary} Produced by {names[0].lstrip('/')}.".strip(),
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
