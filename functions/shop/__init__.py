"""The shop's contracts, shared by every shop function.

- :mod:`functions.shop.events`: the CloudEvents types (pydantic models) and their fields.
- :mod:`functions.shop.prices`: the price list payment charges from.
- :mod:`functions.shop.catalog`: ``python -m functions.shop.catalog`` prints docs/events.md.
"""
