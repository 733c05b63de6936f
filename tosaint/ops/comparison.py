"""comparison operators."""
