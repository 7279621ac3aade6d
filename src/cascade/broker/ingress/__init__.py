"""Ingress: the Broker's HTTP receiver and the group-commit appender behind it."""
