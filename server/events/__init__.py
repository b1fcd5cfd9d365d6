"""Events: the transactional outbox, the relay to RabbitMQ and the CRM casino feed."""
