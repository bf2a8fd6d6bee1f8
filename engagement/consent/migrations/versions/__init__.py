"""Registry schema revisions, applied in order."""
