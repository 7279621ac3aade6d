"""The WSGI app of peer (d): functions-framework's Flask app around ``ff_function.acknowledge``.

``create_app`` is what ``functions-framework --target acknowledge --signature-type
cloudevent`` serves; here gunicorn serves it with the same settings as every other row (the
harness's command line), not with the framework's own (1 worker, 4 threads per CPU).
"""

from __future__ import annotations

from pathlib import Path

import functions_framework

app = functions_framework.create_app(
    target="acknowledge",
    source=str(Path(__file__).with_name("ff_function.py")),
    signature_type="cloudevent",
)
