"""Dispatch: per-Trigger consumers, filters, delivery with retries, replies and dead letters."""
