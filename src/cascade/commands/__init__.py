"""Commands for a second terminal beside ``cascade run``: ``send``, ``tail`` and ``dlq``."""
