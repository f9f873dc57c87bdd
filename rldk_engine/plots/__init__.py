"""Matplotlib figures, one module per family; matplotlib is imported lazily."""
