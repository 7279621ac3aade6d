"""The runtime's old name for the CloudEvents HTTP binding, now :mod:`cascade.codec`.

Kept only for ``functions/dead-letter`` until the public HTTP helpers of issue 9 item 1 replace
that use; new code imports :mod:`cascade.codec`.
"""

from cascade.codec import CloudEventMessage, is_json_content_type, parse_wsgi
from cascade.codec import InvalidEvent as BindingError

__all__ = ["BindingError", "CloudEventMessage", "is_json_content_type", "parse_wsgi"]
