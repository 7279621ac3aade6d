"""Extensions added to a dead-lettered event (§4.2, Kafka column)."""

from __future__ import annotations

import base64

from multidict import CIMultiDict

from cascade.broker.dispatch.dead_letter import ERROR_DATA_LIMIT, dead_letter_event
from cascade.broker.dispatch.delivery import HttpResponse
from cascade.broker.event import StoredEvent

EVENT = StoredEvent(
    {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "knativekafkaoffset": "4"},
    b"payload",
)


def test_transport_error_adds_only_the_destination() -> None:
    failed = dead_letter_event(EVENT, "http://sub/x", None)
    added = set(failed.attributes) - set(EVENT.attributes)
    assert added == {"knativeerrordest"}
    assert failed.attributes["knativeerrordest"] == "http://sub/x"
    assert failed.data == EVENT.data
    assert failed.attributes["knativekafkaoffset"] == "4"


def test_response_adds_code_as_string_and_base64_of_the_first_1024_bytes() -> None:
    body = bytes(range(256)) * 8  # 2048 bytes, not text
    response = HttpResponse(500, CIMultiDict(), body)
    failed = dead_letter_event(EVENT, "http://sub", response)
    assert failed.attributes["knativeerrorcode"] == "500"
    decoded = base64.b64decode(failed.attributes["knativeerrordata"], validate=True)
    assert decoded == body[:ERROR_DATA_LIMIT]


def test_empty_body_gives_no_error_data() -> None:
    failed = dead_letter_event(EVENT, "http://sub", HttpResponse(422, CIMultiDict(), b""))
    assert failed.attributes["knativeerrorcode"] == "422"
    assert "knativeerrordata" not in failed.attributes


def test_kne_headers_become_lowercased_extensions() -> None:
    headers = CIMultiDict(
        {
            "Kne-Reason": "out of stock",
            "KNE-RETRYABLE": "no",
            "X-Other": "x",
            "Kne-Bad_Name": "z",
            "Kne-Id": "hijack",
        }
    )
    failed = dead_letter_event(EVENT, "http://sub", HttpResponse(422, headers, b"no"))
    assert failed.attributes["reason"] == "out of stock"
    assert failed.attributes["retryable"] == "no"
    assert "other" not in failed.attributes
    assert "bad_name" not in failed.attributes
    assert failed.attributes["id"] == "1"  # identity is not rewritten by a header
