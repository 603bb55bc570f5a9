"""``phorque``: the daemon."""

from __future__ import annotations

import sys

from phorque.cli.common import EXIT_OK, base_parser, load_or_exit


def build_parser():
    parser = base_parser("phorque", "Scale a Torque cluster onto clouds, driven by Torque's own files.")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration file, print a summary and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_or_exit(args.config)
    if args.check_config:
        print(config.summary())
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
