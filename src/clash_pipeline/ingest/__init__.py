"""Ingestion: fetch a clan's responses and land them in ``raw``; backfill saved files."""
