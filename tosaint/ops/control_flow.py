"""control_flow operators."""
