"""``phorque-evaluate``: one evaluation now.

Exit status: 0 on success, 2 on a configuration error, 1 when the evaluation could not complete
(Torque unreadable, state unusable, lock not obtained).
"""

from __future__ import annotations

import json
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
from phorque.engine import Engine, Evaluation, evaluation_json
from phorque.errors import PhorqueError

log = logging.getLogger("phorque.evaluate")


def build_parser():
    parser = base_parser("phorque-evaluate", "Run one evaluation now and apply it under the lock.")
    parser.add_argument("--dry-run", action="store_true",
                        help="compute and print the plan; change nothing (no lock, no state)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def render(ev: Evaluation, data: dict) -> str:
    c = data["cluster"]
    lines = [f"{data['time']} policy {data['policy']}: {c['queued_jobs']} queued jobs "
             f"({c['queued_cores']} cores); cores {c['total_cores']} total, {c['free_cores']} free, "
             f"{c['down_cores']} down"]
    for cloud in data["clouds"]:
        lines.append(f"  cloud {cloud['name']}: {cloud['instances']} instances, desired "
                     f"{cloud['desired']}/{cloud['max_instances']}, price {cloud['price']:g}, {cloud['health']}")
    if not ev.plan.actions:
        lines.append("  nothing to do")
    verb = "" if ev.executed else "would "
    for action, row in zip(ev.outcomes or ev.plan.ordered(), data["actions"], strict=False):
        text = str(getattr(action, "action", action))
        outcome = f" -> {row['outcome']}" if "outcome" in row else ""
        lines.append(f"  {verb}{text}{outcome}")
    for note in data["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_or_exit(args.config)
    setup_logging(args.debug, "", config_secrets(config))
    if not args.debug:
        logging.getLogger("phorque.executor").setLevel(logging.WARNING)
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


if __name__ == "__main__":
    sys.exit(main())
