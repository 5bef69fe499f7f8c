"""``python -m tidelog``: the ``tidelog`` command (see ``tidelog._cli``)."""

from tidelog._cli import main

if __name__ == "__main__":
    main()
