"""Local broker that behaves like Knative's Kafka broker class (see docs/broker.md)."""
