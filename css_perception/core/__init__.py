"""Numeric core (numpy only): message conversions, range projection, model metadata, ontology and colours."""
