"""variables operators."""
