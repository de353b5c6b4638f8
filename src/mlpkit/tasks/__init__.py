"""Tasks: what is particular to one kind of data and objective, given to the one runner."""
