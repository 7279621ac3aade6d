"""What ``cascade broker`` prints at start: notices, ingress URLs, the Trigger table, loop risks."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable

from cascade.broker.topology import Topology, TriggerConfig

__all__ = ["loop_risks", "render_startup", "summarize_notices"]

# The least an event can carry; a loop check asks "would this Trigger take its own reply?".
_PROBE_ATTRIBUTES = {"specversion": "1.0", "id": "loop-check", "source": "cascade/loop-check"}


def loop_risks(triggers: Iterable[TriggerConfig]) -> list[str]:
    """One warning per Trigger whose subscriber replies with a type its own filter matches."""
    warnings = []
    for trigger in triggers:
        service = trigger.subscriber_service
        if service is None:
            continue
        looping = [
            reply_type
            for reply_type in service.reply_types
            if trigger.filter.matches({**_PROBE_ATTRIBUTES, "type": reply_type})
        ]
        if looping:
            warnings.append(
                f"trigger {trigger.namespace}/{trigger.name}: its subscriber replies with "
                f"{', '.join(sorted(looping))}, which its own filter matches; the reply comes "
                "back to it and may loop forever (the Kafka broker has no loop guard); "
                "narrow the filter or start the broker with --max-hops N"
            )
    return warnings


_IGNORED = re.compile(r"ignored kind (?P<kind>\S+) '[^']*' in (?P<file>.+)\Z")


def summarize_notices(notices: Iterable[str]) -> list[str]:
    """One line per file for the cluster-only kinds it ignores (a chart render holds many)."""
    ignored: dict[str, Counter[str]] = {}
    others: list[str] = []
    for notice in notices:
        match = _IGNORED.match(notice)
        if match is None:
            others.append(notice)
        else:
            ignored.setdefault(match["file"], Counter())[match["kind"]] += 1
    for file, kinds in ignored.items():
        shown = ", ".join(
            f"{kind} x{count}" if count > 1 else kind for kind, count in kinds.items()
        )
        total = sum(kinds.values())
        others.append(f"{file}: ignored {total} object(s) of kinds used only on a cluster: {shown}")
    return others


def render_startup(topology: Topology, ingress_url: Callable[[str, str], str]) -> str:
    lines = [f"notice: {notice}" for notice in summarize_notices(topology.notices)]
    for namespace, name in sorted(topology.brokers):
        lines.append(f"broker {namespace}/{name}: {ingress_url(namespace, name)}")
    rows = [("TRIGGER", "BROKER", "ORDER", "RETRY", "DEAD-LETTER SINK", "SUBSCRIBER", "FILTER")]
    for trigger in topology.triggers:
        rows.append(
            (
                f"{trigger.namespace}/{trigger.name}",
                trigger.broker,
                "ordered" if trigger.ordered else "unordered",
                str(trigger.delivery.retry),
                trigger.delivery.dead_letter_sink or "-",
                trigger.subscriber,
                json.dumps(trigger.filter_spec, separators=(",", ":"), sort_keys=True)
                if trigger.filter_spec
                else "(all events)",
            )
        )
    if len(rows) == 1:
        lines.append("no triggers: events are stored and never delivered")
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
