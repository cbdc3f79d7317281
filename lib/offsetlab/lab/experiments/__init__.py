"""One module per experiment (E01-E08): scenario code the notebooks call."""
