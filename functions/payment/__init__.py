"""The payment function of the shop (its handlers are in func.py)."""
