"""scatter_gather operators."""
