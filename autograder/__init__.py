"""Workshop autograder: release, run and grade Keras notebooks, honestly and safely."""

__version__ = "0.1.0"
