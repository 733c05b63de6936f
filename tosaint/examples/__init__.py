"""Bundled example graphs (``a16w8_conv.tosa``) and the script that makes them."""
