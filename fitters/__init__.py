"""fitters package."""
