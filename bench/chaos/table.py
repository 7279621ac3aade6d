"""Print the chaos results given (JSON files) as the markdown table of docs/reliability.md.

python -m bench.chaos.table bench/results/chaos-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench._report import markdown_table

HEADERS = (
    "date (UTC)",
    "log",
    "state",
    "orders",
    "kills (restarts)",
    "placing / until settled",
    "orders/s",
    "events (events/s)",
    "dead letters",
    "emails resent",
    "RSS growth MiB per 10k events",
    "last line",
)


def row(result: dict[str, Any]) -> list[str]:
    figures, verdict, settings = result["figures"], result["verdict"], result["settings"]
    growth = ", ".join(
        f"{name} {rss['growth_mib_per_10k_events']:+.1f}"
        for name, rss in sorted(figures["rss"].items())
        if name != "samples" and rss["growth_mib_per_10k_events"] is not None
    )
    return [
        result["date"],
        settings["log"],
        settings["state"],
        str(figures["accepted"]),
        f"{len(figures['kills'])} ({figures['restarts']})",
        f"{figures['placing_s']:.0f} s / {figures['until_settled_s']:.0f} s",
        f"{figures['orders_per_s']}",
        f"{figures['events']} ({figures['events_per_s']})",
        str(verdict["dead_letters"]),
        str(verdict["emails_resent_same_message_id"]),
        growth or "-",
        f"`{result['line']}`",
    ]


def main(paths: list[str]) -> None:
    results = [json.loads(Path(path).read_text()) for path in paths]
    print(markdown_table(HEADERS, [row(result) for result in results]))


if __name__ == "__main__":
    main(sys.argv[1:])
