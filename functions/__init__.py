"""The shop: Cascade's reference system, one folder per function (``functions/<name>/func.py``).

Shared event contracts live in :mod:`functions.shop`; run from the repository root so
``from functions.shop.events import ...`` resolves (``cascade serve`` puts the working directory
on ``sys.path``).
"""
