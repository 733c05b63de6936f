"""ewise_binary operators."""
