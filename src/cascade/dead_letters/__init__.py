"""Dead letters parked in a dead-letter sink: its HTTP API (:mod:`.client`), the replay
protocol (:mod:`.replay`) and where a replay may go (:mod:`.destinations`), shared by
``cascade dlq`` and the web console.

Any sink that serves this API works, not only the shop's dead-letter function:

- ``GET /dead-letters[?partitionkey=&type=&limit=]``: ``{"dead_letters": [summary, ...]}``,
  newest first; a summary has ``id``, ``type``, ``event_id``, ``partitionkey`` (the event's
  extension, or null), ``error_code``, ``reason``, ``dest`` (``knativeerrordest``),
  ``replay_count``, ``time``; a sink may add fields of its own.
- ``GET /dead-letters/<id>``: a summary plus ``error_data`` (``{"base64": ...}``, the
  ``knativeerrordata``) and ``event`` (``attributes``, ``data_base64``, readable ``data``).
- ``POST /dead-letters/<id>/replayed``: count one replay.
"""
