"""data_layout operators."""
