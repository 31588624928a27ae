"""greenlane's Avro schemas, shipped as package data (found with importlib.resources)."""
