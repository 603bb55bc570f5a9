"""``phorque-evaluate``: one evaluation now.

Exit status: 0 on success, 2 on a configuration error, 1 when the evaluation could not complete
(Torque unreadable, state unusable, lock not obtained), also when the running daemon did it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from phorque.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    base_parser,
    config_secrets,
    load_or_exit,
    printable,
    safe_stdout,
    setup_logging,
)
from phorque.engine import Engine, Evaluation, evaluation_json
from phorque.errors import PhorqueError

log = logging.getLogger("phorque.evaluate")


def build_parser():
    parser = base_parser("phorque-evaluate", "Run one evaluation now and apply it under the lock.")
    parser.add_argument("--dry-run", action="store_true",
                        help="compute and print the plan; change nothing (no lock, no state)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="ask for an evaluation and return at once")
    parser.add_argument("--local", action="store_true",
                        help="evaluate in this process even when a daemon runs (still under the lock)")
    return parser


def _through_daemon(config, wait: bool) -> str | None:
    """Nudge a running daemon instead of racing it: "done", "ack", or None (no daemon)."""
    from phorque.daemon import running_daemon
    from phorque.nudge import ask_daemon

    address = config.phorque.trigger
    pid = running_daemon(config)
    if address is None or pid is None:
        return None
    answer = ask_daemon(address, wait=wait)
    if answer is None:
        log.warning("daemon pid %d did not answer on %s; evaluating here", pid, config.phorque.trigger_address)
    return answer


def _in_background(args) -> None:
    argv = [sys.executable, "-m", "phorque.cli.evaluate", "--local"]
    if args.config:
        argv += ["-c", args.config]
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def render(ev: Evaluation, data: dict) -> str:
    c = data["cluster"]
    lines = [f"{data['time']} policy {data['policy']}: {c['queued_jobs']} queued jobs "
             f"({c['queued_cores']} cores); cores {c['total_cores']} total, {c['free_cores']} free, "
             f"{c['down_cores']} down"]
    for cloud in data["clouds"]:
        lines.append(f"  cloud {printable(cloud['name'], 40)}: {cloud['instances']} instances, desired "
                     f"{cloud['desired']}/{cloud['max_instances']}, price {cloud['price']:g}, {cloud['health']}")
    if not ev.plan.actions:
        lines.append("  nothing to do")
    verb = "" if ev.executed else "would "
    for action, row in zip(ev.outcomes or ev.plan.ordered(), data["actions"], strict=False):
        text = str(getattr(action, "action", action))
        outcome = f" -> {row['outcome']}" if "outcome" in row else ""
        # Node and DNS names come from Torque and the clouds: shown escaped, one line each.
        lines.append(f"  {verb}{printable(text, 400)}{printable(outcome, 200)}")
    for note in data["notes"]:
        lines.append(f"  note: {printable(note, 400)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_or_exit(args.config)
    setup_logging(args.debug, "", config_secrets(config))
    safe_stdout()
    if not args.debug:
        logging.getLogger("phorque.executor").setLevel(logging.WARNING)
    if not args.dry_run and not args.local:
        answer = _through_daemon(config, wait=not args.asynchronous)
        if answer == "done":
            return _print_daemon_result(config, args.json)
        if answer == "skipped":
            message = ("the running daemon's evaluation was skipped or failed (see its log); "
                       "nothing was decided")
            log.error("%s", message)
            if args.json:
                print(json.dumps({"error": message, "executed": False}))
            return EXIT_FAILED
        if answer == "ack":
            print("evaluation requested from the running daemon")
            return EXIT_OK
        if args.asynchronous:
            _in_background(args)
            print("no daemon answered: evaluating in the background")
            return EXIT_OK
    try:
        ev = Engine(config).evaluate(dry_run=args.dry_run)
    except PhorqueError as exc:
        log.error("evaluation failed: %s", exc)
        if args.json:
            print(json.dumps({"error": str(exc), "executed": False}))
        return EXIT_FAILED
    data = evaluation_json(config, ev)
    print(json.dumps(data, sort_keys=True) if args.json else render(ev, data))
    return EXIT_OK


def _print_daemon_result(config, as_json: bool) -> int:
    from phorque.state import StateStore

    try:
        result = StateStore(config.phorque.state_path).daemon().get("last_result")
    except PhorqueError as exc:
        log.error("the daemon evaluated, but its result cannot be read: %s", exc)
        return EXIT_FAILED
    if result is None:
        print("the daemon evaluated (no result recorded)")
        return EXIT_OK
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"evaluated by the running daemon at {result['time']}:")
        for row in result["actions"]:
            target = row.get('node') or row.get('instance') or row.get('cloud') or ""
            print(f"  {row['action']} {printable(target, 100)}: {printable(row['reason'], 300)} "
                  f"-> {printable(row.get('outcome', ''), 200)}")
        if not result["actions"]:
            print("  nothing to do")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
