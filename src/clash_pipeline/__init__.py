"""clash-pipeline: Clash of Clans clan data pipeline."""
