"""greenlane stream processing: ingest, data quality, targeting, routing, metrics."""
