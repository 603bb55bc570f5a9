"""``phorque``: the daemon."""

from __future__ import annotations

import logging
import os
import signal
import sys

from phorque.adapters.config import Config, config_path_from
from phorque.adapters.torque.commands import Torque
from phorque.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    base_parser,
    config_secrets,
    load_or_exit,
    setup_logging,
)
from phorque.core.errors import ConfigError, PhorqueError

#: The Torque commands Phorque runs.
TORQUE_COMMANDS = ("qstat", "pbsnodes", "qmgr")

log = logging.getLogger("phorque")


def build_parser():
    parser = base_parser("phorque", "Scale a Torque cluster onto clouds, driven by Torque's own files.")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration file, print a summary and exit")
    parser.add_argument("--once", action="store_true",
                        help="run one evaluation cycle and exit (1 if it was skipped or failed)")
    parser.add_argument("--release", action="store_true",
                        help="take Phorque out of service: drain and release every instance it owns "
                             "(never killing a job), wait until none is left, and say so")
    return parser


def installation_problems(config: Config) -> list[str]:
    """What the configuration points at that is not there: Torque's spool and its commands."""
    p = config.phorque
    out = []
    if not os.path.isdir(p.torque_home):
        out.append(f"{config.path}: [Phorque] torque_home: {p.torque_home}: no such directory")
    elif not os.path.isdir(os.path.join(p.torque_home, "server_priv")):
        out.append(f"{config.path}: [Phorque] torque_home: {p.torque_home} has no server_priv/ "
                   "(Phorque runs on the pbs_server host)")
    torque = Torque(p.cluster_directory, p.command_timeout_secs)
    for name in TORQUE_COMMANDS:
        try:
            torque.command(name)
        except PhorqueError:
            out.append(f"{config.path}: [Phorque] cluster_directory: {name} not found in "
                       f"{os.path.join(p.cluster_directory, 'bin')} or on PATH")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_or_exit(args.config)
    if args.check_config:
        print(config.summary())
        problems = installation_problems(config)
        for problem in problems:
            print(f"phorque: {problem}", file=sys.stderr)
        # 2: the file is wrong; 1: the file is right, but what it names is not there.
        return EXIT_FAILED if problems else EXIT_OK
    try:
        setup_logging(args.debug, config.phorque.log_file, config_secrets(config),
                      config.phorque.log_format)
    except OSError as exc:
        error = ConfigError(config.path, "Phorque", "log_file",
                            f"cannot open {config.phorque.log_file}: {exc.strerror or exc}")
        print(f"phorque: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    # Imported here so that --check-config works even where watchdog is broken.
    from phorque.runtime.daemon import Daemon

    if args.release:
        return _release(config)
    try:
        daemon = Daemon(config, once=args.once)
        daemon.install_signals()
        daemon.run(config_path_from(args.config))
    except ConfigError as exc:
        log.error("configuration refused: %s", exc)
        return EXIT_CONFIG
    except PhorqueError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    if args.once and not daemon.last_ok:
        log.error("the evaluation was skipped or failed (see above): nothing was decided")
        return EXIT_FAILED
    return EXIT_OK


def _release(config: Config) -> int:
    from phorque.act.release import release
    from phorque.runtime.daemon import running_daemon

    pid = running_daemon(config)
    if pid is not None:
        print(f"phorque: the daemon runs (pid {pid}): stop it first (systemctl stop phorque), "
              "or it would launch again", file=sys.stderr)
        return EXIT_FAILED
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    return release(config, say=lambda text: print(text, flush=True), stop=lambda: bool(stopping))


if __name__ == "__main__":
    sys.exit(main())
