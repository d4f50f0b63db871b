"""Event contracts: Avro schemas, their Python models, and the wire formats."""
