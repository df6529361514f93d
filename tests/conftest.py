"""Shared fixtures: tiny generated media (fixtures_media) and databases (fixtures_db)."""

pytest_plugins = ["fixtures_media", "fixtures_db", "fixtures_s3", "fixtures_ralph", "fixtures_lrs"]
