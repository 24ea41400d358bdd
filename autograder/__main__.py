"""``python -m autograder``: the same as the ``autograder`` command."""

from .cli import main

if __name__ == "__main__":
    main()
