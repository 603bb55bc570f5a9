"""``phorque-evaluate``: one evaluation now."""

from __future__ import annotations

import sys

from phorque.cli.common import EXIT_OK, base_parser, load_or_exit


def main(argv: list[str] | None = None) -> int:
    args = base_parser("phorque-evaluate", "Run one evaluation now.").parse_args(argv)
    load_or_exit(args.config)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
