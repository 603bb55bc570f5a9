"""``phorque-evaluate``: one evaluation now.

Exit status: 0 on success, 2 on a configuration error, 1 when the evaluation could not complete
(Torque unreadable, state unusable, lock not obtained), also when the running daemon did it, and
when ``--save-snapshot`` could not write its file (the evaluation itself was done and printed).

``--snapshot FILE`` plans with the configured policy on a saved snapshot
(:mod:`phorque.adapters.snapshot_file`) and reads nothing else: exit 0 when the plan (actions and notes)
is the one saved in the file, 1 when it differs, 2 when the file or the configuration cannot be
used.
"""

from __future__ import annotations

import difflib
import json
import logging
import subprocess
import sys
from typing import Any

from phorque.act.engine import Engine, Evaluation, evaluation_json
from phorque.adapters.snapshot_file import (
    SnapshotFileError,
    document,
    plan_rows,
    policy_section,
    read_saved,
    write_saved,
)
from phorque.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    base_parser,
    config_secrets,
    load_or_exit,
    printable,
    safe_stdout,
    setup_logging,
)
from phorque.core.errors import PhorqueError
from phorque.policy import make_policy
from phorque.policy.base import Policy

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
    parser.add_argument("--save-snapshot", metavar="FILE",
                        help="write the snapshot this evaluation decided on, the policy and its plan "
                             "to FILE (evaluates in this process, as --local does)")
    parser.add_argument("--snapshot", metavar="FILE",
                        help="plan with the configured policy on the snapshot saved in FILE: reads no "
                             "Torque and no cloud, changes nothing; exit 1 when the plan differs "
                             "from the one saved")
    return parser


def _through_daemon(config, wait: bool) -> str | None:
    """Nudge a running daemon instead of racing it: "done", "ack", or None (no daemon)."""
    from phorque.runtime.daemon import running_daemon
    from phorque.runtime.nudge import ask_daemon

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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.snapshot is not None and (args.asynchronous or args.local):
        parser.error("--snapshot evaluates nothing live: it takes no --async or --local")
    if args.save_snapshot is not None and args.asynchronous:
        parser.error("--save-snapshot waits for its evaluation: it takes no --async")
    config = load_or_exit(args.config)
    setup_logging(args.debug, "", config_secrets(config))
    safe_stdout()
    if not args.debug:
        logging.getLogger("phorque.executor").setLevel(logging.WARNING)
    if args.snapshot is not None:
        return _plan_saved(config, args)
    # The daemon's evaluation is not this process's to save: --save-snapshot evaluates here.
    if not args.dry_run and not args.local and args.save_snapshot is None:
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
    engine = Engine(config)
    try:
        ev = engine.evaluate(dry_run=args.dry_run)
    except PhorqueError as exc:
        log.error("evaluation failed: %s", exc)
        if args.json:
            print(json.dumps({"error": str(exc), "executed": False}))
        return EXIT_FAILED
    data = evaluation_json(config, ev)
    print(json.dumps(data, sort_keys=True) if args.json else render(ev, data))
    if args.save_snapshot is not None:
        how = "--dry-run" if args.dry_run else "(executed)"
        return _save(args.save_snapshot, ev.snapshot, engine.policy, ev.plan,
                     f"phorque-evaluate {how} at {data['time']} with {config.path}")
    return EXIT_OK


def _save(path: str, snapshot, policy: Policy, plan, description: str) -> int:
    try:
        write_saved(path, document(snapshot, policy, plan, description))
    except (OSError, ValueError, TypeError) as exc:
        # The evaluation was done (and printed); only the file is missing.
        log.error("cannot save the snapshot to %s: %s", path, getattr(exc, "strerror", None) or exc)
        return EXIT_FAILED
    log.info("snapshot, policy and plan saved to %s", path)
    return EXIT_OK


def _plan_saved(config, args) -> int:
    """``--snapshot FILE``: the configured policy on the file's snapshot, compared with the plan
    saved there. Reads no Torque, no cloud and no state; takes no lock."""
    try:
        saved = read_saved(args.snapshot)
    except SnapshotFileError as exc:
        # Field names come from the file: shown escaped, on one line.
        print(f"phorque: saved snapshot: {printable(exc, 2000)}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "executed": False}))
        return EXIT_CONFIG
    policy = make_policy(config)
    plan = policy.plan(saved.snapshot)
    ev = Evaluation(saved.snapshot.now, saved.snapshot, plan, executed=False)
    data = evaluation_json(config, ev)
    rows, notes = plan_rows(plan), list(plan.notes)
    configured = policy_section(policy)
    same_plan = saved.same_plan(plan)
    data["snapshot"] = {"file": args.snapshot, "same_plan": same_plan,
                        "same_policy": configured == saved.policy, "policy": configured,
                        "saved_policy": saved.policy, "saved_actions": saved.plan,
                        "saved_notes": saved.notes, "wake_at": plan.wake_at,
                        "saved_wake_at": saved.wake_at if saved.wake_saved else None}
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        print(render(ev, data))
        print("\n".join(_compared(args.snapshot, configured, saved.policy, same_plan,
                                   _diff_rows(saved.plan, saved.notes, saved.wake_at, saved.wake_saved),
                                   _diff_rows(rows, notes, plan.wake_at, saved.wake_saved))))
    code = EXIT_OK
    if args.save_snapshot is not None:
        code = _save(args.save_snapshot, saved.snapshot, policy, plan, saved.description)
    return code if same_plan else EXIT_FAILED


def _diff_rows(actions: list[dict[str, Any]], notes: list[str], wake_at: float | None,
               with_wake: bool) -> list[dict[str, Any]]:
    """A plan as ``--snapshot`` compares it, one row per action, note and (when the file saved
    one) wake-up."""
    return actions + [{"note": n} for n in notes] + ([{"wake_at": wake_at}] if with_wake else [])


def _compared(path: str, configured: dict[str, Any], saved_policy: dict[str, Any], same_plan: bool,
              saved: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[str]:
    """What ``--snapshot`` says after the plan: the policy that made the saved plan when it is
    not the configured one, and whether (and how) the plan differs from the saved one."""
    lines = []
    where = printable(path, 200)
    if configured != saved_policy:
        changes = [f"{key} {json.dumps(configured.get(key))} (saved: {json.dumps(saved_policy.get(key))})"
                   for key in configured if configured.get(key) != saved_policy.get(key)]
        lines.append(f"  snapshot {where}: the saved plan was made by policy "
                     f"{printable(saved_policy['name'], 60)}; planned here with "
                     f"{printable(configured['name'], 60)}: {printable('; '.join(changes), 600)}")
    if same_plan:
        lines.append(f"  snapshot {where}: the plan is the one saved")
        return lines
    lines.append(f"  snapshot {where}: the plan differs from the one saved:")
    diff = difflib.unified_diff([json.dumps(r, sort_keys=True) for r in saved],
                                [json.dumps(r, sort_keys=True) for r in now],
                                "saved", "now", lineterm="", n=1)
    lines += [f"    {printable(line, 600)}" for line in diff]
    return lines


def _print_daemon_result(config, as_json: bool) -> int:
    from phorque.adapters.state import StateStore

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
