"""Project scripts (run from the repository root): chart rendering and generated chart values."""
