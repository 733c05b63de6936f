"""type_conversion operators."""
