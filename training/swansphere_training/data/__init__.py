"""Clip storage format, dataset API and importers for real corpora."""
