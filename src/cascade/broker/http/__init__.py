"""HTTP plumbing of the broker: the hot-path client, CloudEvents on HTTP, admin endpoints."""
