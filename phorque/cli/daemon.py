"""``phorque``: the daemon."""

from __future__ import annotations

import logging
import sys

from phorque.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    base_parser,
    config_secrets,
    load_or_exit,
    setup_logging,
)
from phorque.config import config_path_from
from phorque.errors import PhorqueError

log = logging.getLogger("phorque")


def build_parser():
    parser = base_parser("phorque", "Scale a Torque cluster onto clouds, driven by Torque's own files.")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration file, print a summary and exit")
    parser.add_argument("--once", action="store_true", help="run one evaluation cycle and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_or_exit(args.config)
    if args.check_config:
        print(config.summary())
        return EXIT_OK
    setup_logging(args.debug, config.phorque.log_file, config_secrets(config))
    # Imported here so that --check-config works even where watchdog is broken.
    from phorque.daemon import Daemon

    try:
        daemon = Daemon(config, once=args.once)
        daemon.install_signals()
        daemon.run(config_path_from(args.config))
    except PhorqueError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
