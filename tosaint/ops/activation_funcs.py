"""activation_funcs operators."""
