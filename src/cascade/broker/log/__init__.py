"""Broker logs: one interface (base.BrokerLog), several backends."""
