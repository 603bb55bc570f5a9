"""What every Phorque command shares: -c/-d options, logging, loading the configuration."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable

from phorque import __version__
from phorque.act.events import FIELDS_ATTR, JsonFormatter
from phorque.adapters.config import DEFAULT_CONFIG, Config, config_path_from, load_config
from phorque.adapters.private import private_file
from phorque.adapters.redact import all_forms
from phorque.core.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-c", "--config", metavar="FILE", default=None,
                        help=f"configuration file (default: $PHORQUE_CONFIG, else {DEFAULT_CONFIG})")
    parser.add_argument("-d", "--debug", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class RedactSecrets(logging.Filter):
    """Replaces every configured credential with ``***`` in each log record."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        # Every escaped and quoted form too: botocore shows a header holding a key with repr().
        self.secrets = all_forms(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text
        if exc_text:
            for secret in self.secrets:
                exc_text = exc_text.replace(secret, "***")
            record.exc_text = exc_text
        if redacted != message:
            record.msg, record.args = redacted, None
        fields = getattr(record, FIELDS_ATTR, None)
        if fields:
            # An event's fields reach the JSON log as they are: a cloud error in one of them
            # may quote a request that holds a key.
            setattr(record, FIELDS_ATTR, {k: self._redact(v) for k, v in fields.items()})
        return True

    def _redact(self, value: object) -> object:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "***")
            return value
        if isinstance(value, list | tuple):
            return [self._redact(v) for v in value]
        if isinstance(value, dict):
            return {k: self._redact(v) for k, v in value.items()}
        return value


def config_secrets(config: Config) -> list[str]:
    found = []
    for cloud in config.clouds:
        for secret in (cloud.access_id, cloud.secret_key):
            if secret is not None:
                found.append(secret.reveal())
    return found


def setup_logging(debug: bool, log_file: str = "", secrets: Iterable[str] = (),
                  log_format: str = "text") -> None:
    """Log to standard error (or ``log_file``), with credentials redacted: text lines, or one
    JSON object per line (``log_format = json``, :mod:`phorque.act.events`)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if log_file:
        private_file(log_file)  # created owner-only; an existing file keeps its mode
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # botocore's own debug output includes request headers; it is never useful enough for that.
    for noisy in ("botocore", "boto3", "urllib3", "watchdog", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_or_exit(path: str | None) -> Config:
    """The configuration, or a one-line message naming file, section and option, and exit 2."""
    try:
        return load_config(config_path_from(path))
    except ConfigError as exc:
        print(f"phorque: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def safe_stdout() -> None:
    """Print what the terminal's encoding cannot show as escapes rather than fail on it.

    A node or instance name may hold characters a Latin-1 or ASCII locale cannot encode; the
    rest of the output must still be printed.
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def printable(text: object, limit: int = 80) -> str:
    """A value safe to print in a table: control characters and bad bytes shown escaped."""
    value = str(text)
    out = []
    for ch in value:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
