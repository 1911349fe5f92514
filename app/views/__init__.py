"""One module per console page; each has a ``render()`` that draws it."""
