"""`goflex-atp`: the ATP command line (validate, check-schedule, convert, schema, serve, foa).

Exit codes: 0 when everything checked is valid, 1 when any offer, schedule or file has a
problem, 2 for a wrong command line. Bad input never produces a traceback: each problem is
one line `FILE: offer N: path: sentence`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from atp import __version__
from atp.errors import InputFileError, Problem, ValidationError
from atp.flexoffer.codec import decode, encode
from atp.flexoffer.feasibility import check_schedule
from atp.flexoffer.files import DEFAULT_MAX_BYTES, expand_paths, read_documents, write_atomic, write_jsonl_atomic
from atp.flexoffer.model import FlexOffer, Schedule
from atp.flexoffer.schema import schema_json
from atp.flexoffer.validation import SECONDS_PER_DAY, Limits, validate_offer, validate_offer_data

__all__ = ["main"]

# The serve command's limit options: flag, its `ServiceLimits` field, number type, help. The
# defaults the help states are ServiceLimits' own (tests/test_services_cli.py checks them); an
# option not given keeps its field's default.
_LIMIT_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("--max-body-bytes", "max_body_bytes", int, "largest request body in bytes, 413 beyond (default 8388608)"),
    (
        "--body-timeout-s",
        "body_timeout_s",
        float,
        "seconds to receive a body once its headers are in, 408 after (default 30)",
    ),
    ("--default-page-size", "default_page_size", int, "items per page of a list without ?limit= (default 100)"),
    ("--max-page-size", "max_page_size", int, "largest ?limit= of a list, 422 beyond (default 1000)"),
    (
        "--max-active-offers",
        "max_active_offers_per_party",
        int,
        "a party's offers not yet settled, rejected or withdrawn, 409 beyond (default 10000)",
    ),
    (
        "--max-measurements",
        "max_measurements_per_request",
        int,
        "items of one POST /flexoffer/measurement, 422 beyond (default 10000)",
    ),
    (
        "--measurement-margin-s",
        "measurement_margin_s",
        int,
        "seconds a measurement may lie outside its offer's operation (default 86400)",
    ),
    (
        "--max-timeseries-steps",
        "max_timeseries_steps",
        int,
        "steps of one GET /timeseries answer, 422 beyond (default 100000)",
    ),
)
# The connection timeouts (`atp.interface.limits.connection_options`): flag, keyword, type, help.
_CONNECTION_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    (
        "--header-timeout-s",
        "header_timeout_s",
        float,
        "seconds a client has to send a request line and headers (default 10)",
    ),
    ("--idle-timeout-s", "idle_timeout_s", int, "seconds an idle keep-alive connection stays open (default 5)"),
)


class _OptionError(ValidationError):
    """An option's value is not a number or out of its range: a wrong command line (exit code 2)."""


def _number(flag: str, kind: type, text: str) -> int | float:
    """The value of a numeric option; _OptionError naming the option otherwise."""
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise _OptionError(f"{flag} {text}: not {what}") from None
    if not math.isfinite(value):
        raise _OptionError(f"{flag} {text}: not a finite number")
    return value


def _named(exc: ValueError, options: tuple[tuple[str, str, type, str], ...]) -> _OptionError:
    """A range error of `ServiceLimits` or `connection_options` (`field(=value) ...`) naming the options."""
    text = str(exc)
    for flag, field, _, _ in options:
        text = re.sub(rf"\b{field}\(=([^)]*)\)", rf"{flag} \1", text)
    return _OptionError(re.sub(r"^(--[\w-]+ \S+) ", r"\1: ", text, count=1))


def _serve_limits(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The `ServiceLimits` and the connection timeouts the serve command's options ask for."""
    from atp.interface.limits import ServiceLimits, connection_options

    def given(options: tuple[tuple[str, str, type, str], ...]) -> dict[str, Any]:
        values = {field: getattr(args, field) for _, field, _, _ in options}
        return {
            field: _number(flag, kind, values[field]) for flag, field, kind, _ in options if values[field] is not None
        }

    try:
        limits = ServiceLimits(**given(_LIMIT_OPTIONS))
    except ValueError as exc:
        raise _named(exc, _LIMIT_OPTIONS) from None
    timeouts = given(_CONNECTION_OPTIONS)
    try:
        connection_options(**timeouts)
    except ValueError as exc:
        raise _named(exc, _CONNECTION_OPTIONS) from None
    return limits, timeouts


def _load_offers(
    path: str, fmt: str, limits: Limits, max_bytes: int, out: TextIO
) -> tuple[list[FlexOffer | None], int]:
    """Offers of a file (None where invalid) and the number of problems printed."""
    try:
        docs = read_documents(path, max_bytes=max_bytes)
    except InputFileError as exc:
        print(str(exc), file=out)
        return [], 1
    offers: list[FlexOffer | None] = []
    n_problems = 0
    for i, doc in enumerate(docs):
        if fmt == "goflex":
            from atp.flexoffer.goflex import read_goflex_offer

            read = read_goflex_offer(doc)
            offer, problems = read.offer, read.problems
            for notice in read.notices:
                print(f"{path}: offer {i}: notice: {notice}", file=out)
            if offer is not None:
                problems = validate_offer(offer, limits=limits)
        else:
            offer, problems = validate_offer_data(doc, limits=limits)
        for p in problems:
            print(f"{path}: offer {i}: {p}", file=out)
        n_problems += len(problems)
        offers.append(offer if not problems else None)
    return offers, n_problems


def _cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    limits = Limits(max_profile_s=int(args.max_profile_days * SECONDS_PER_DAY))
    total = valid = 0
    bad_files = 0
    paths = expand_paths(args.files)
    if not paths:
        print("no *.json or *.jsonl files in " + ", ".join(args.files), file=out)
        return 1
    for path in paths:
        offers, n_problems = _load_offers(str(path), args.format, limits, args.max_mib * 2**20, out)
        if not offers and n_problems:
            bad_files += 1
        total += len(offers)
        valid += sum(o is not None for o in offers)
    files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
    print(
        f"{files}, {total} offers: {valid} valid, {total - valid} invalid"
        + (f", {bad_files} unreadable file{'s' if bad_files != 1 else ''}" if bad_files else ""),
        file=out,
    )
    return 0 if valid == total and not bad_files else 1


def _cmd_check_schedule(args: argparse.Namespace, out: TextIO) -> int:
    max_bytes = args.max_mib * 2**20
    offers: list[FlexOffer | None] = []
    n_problems = 0
    for path in expand_paths([args.offers]):
        file_offers, file_problems = _load_offers(str(path), "v1", Limits(), max_bytes, out)
        offers.extend(file_offers)
        n_problems += file_problems
    if n_problems or not offers:
        print(f"{args.offers}: fix the offers first", file=out)
        return 1
    by_id: dict[str, FlexOffer] = {}
    for i, offer in enumerate(offers):
        if offer is None:
            continue
        if offer.id is None:
            print(f"{args.offers}: offer {i}: id: is required to match schedules", file=out)
            return 1
        by_id[offer.id] = offer
    try:
        docs = read_documents(args.schedules, max_bytes=max_bytes)
    except InputFileError as exc:
        print(str(exc), file=out)
        return 1
    feasible = 0
    for i, doc in enumerate(docs):
        schedule, problems = decode(Schedule, doc)
        if schedule is not None:
            offer = by_id.get(schedule.flex_offer_id)
            if offer is None:
                problems = [Problem("flex_offer_id", f"no offer with id {schedule.flex_offer_id!r} in {args.offers}")]
            else:
                problems = check_schedule(offer, schedule)
        for p in problems:
            rule = f"rule {p.rule}: " if p.rule.isdigit() else ""
            print(f"{args.schedules}: schedule {i}: {rule}{p}", file=out)
        feasible += not problems
    print(f"{len(docs)} schedules: {feasible} feasible, {len(docs) - feasible} infeasible", file=out)
    return 0 if feasible == len(docs) else 1


def _cmd_convert(args: argparse.Namespace, out: TextIO) -> int:
    from atp.flexoffer.goflex import offer_to_goflex

    if args.from_format == args.to_format:
        print(f"--from and --to are both {args.from_format}: nothing to convert", file=out)
        return 2
    reader = "goflex" if args.from_format == "goflex" else "v1"
    offers, n_problems = _load_offers(args.input, reader, Limits(), args.max_mib * 2**20, out)
    if n_problems or not offers:
        print(f"nothing written: {args.input} has problems", file=out)
        return 1
    converted: list[Any] = []
    for i, offer in enumerate(o for o in offers if o is not None):
        if args.to_format == "goflex":
            try:
                converted.append(offer_to_goflex(offer, lossy=args.lossy))
            except ValidationError as exc:
                print(f"{args.input}: offer {i}: {exc}", file=out)
                n_problems += 1
        else:
            converted.append(encode(offer))
    if n_problems:
        print(f"nothing written: {n_problems} offers cannot be converted (--lossy drops what does not fit)", file=out)
        return 1
    if str(args.output).endswith(".jsonl"):
        write_jsonl_atomic(args.output, converted)
    else:
        body = converted[0] if len(converted) == 1 else converted
        write_atomic(args.output, json.dumps(body, indent=2, allow_nan=False) + "\n")
    print(f"wrote {len(converted)} offers to {args.output}", file=out)
    return 0


def _cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    if args.output:
        write_atomic(args.output, schema_json())
    else:
        out.write(schema_json())
    return 0


def _cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from atp.interface.auth import load_tokens
    from atp.interface.serve import ServeConfigError, check_tls
    from atp.services.command import mqtt_gateway, receiver_clock, receiver_for
    from atp.services.providers import load_contracts
    from atp.services.receivers import check_receiver, default_store_url, open_receiver_store

    if not 0 <= args.port <= 65535:
        raise ServeConfigError(f"--port {args.port}: must lie in 0..65535 (e.g. 8080)")
    limits, timeouts = _serve_limits(args)
    tokens = load_tokens(args.tokens)
    contracts = load_contracts(args.contracts) if args.contracts is not None else None
    tls = check_tls(args.certfile, args.keyfile)
    check_receiver(args.role, contracts=contracts)
    store_url = args.store if args.store is not None else default_store_url(args.role)
    clock = receiver_clock(args)
    name = args.name or args.role
    store = open_receiver_store(store_url, name, clock=clock, numbered_ids=args.numbered_ids)
    try:
        receiver = receiver_for(args, store, tokens=tokens, contracts=contracts, limits=limits, clock=clock)
        gateway = None
        try:
            gateway = mqtt_gateway(args, receiver, name=name, tokens=tokens)
            if gateway is not None:
                print(f"MQTT binding through {args.mqtt}: topics atp/v1/{name}/PARTY/...", file=out, flush=True)
            held = {"tls": tls, "store_url": store_url, "n_tokens": len(tokens), "timeouts": timeouts}
            return _run_server(args, receiver, **held, out=out)
        finally:
            if gateway is not None:
                gateway.stop()
            receiver.stop()
    finally:
        store.close()


def _run_server(
    args: argparse.Namespace,
    receiver: Any,
    *,
    tls: bool,
    store_url: str,
    n_tokens: int,
    timeouts: dict[str, Any],
    out: TextIO,
) -> int:
    from atp.interface.persist import redacted_url
    from atp.interface.serve import serve

    scheme = "https" if tls else "http"
    store = receiver.store
    held = f"store {redacted_url(store_url)} ({len(store.records())} offers, {store.last_seq} events)"
    print(
        f"serving {args.role} on {scheme}://{args.host}:{args.port} for {n_tokens} tokens, {held}",
        file=out,
        flush=True,
    )
    if args.clock == "operator":
        print(
            f"on an operator clock from {store.clock().isoformat()}: rounds run when the operator asks",
            file=out,
            flush=True,
        )
    elif args.role == "fman" and args.prices is not None:
        market = f", bidding into {args.market}" if args.market is not None else ""
        print(f"planning every {args.plan_every:g} s against {args.prices}{market}", file=out, flush=True)
    if receiver.market is not None:
        m = receiver.market
        gates = ", ".join(g.isoformat("minutes") for g in m.calendar.intraday_gates) or "none"
        print(
            f"market {m.market.mechanism.name}: day-ahead gate {m.calendar.day_ahead_gate.isoformat('minutes')}, "
            f"intraday gates {gates} ({m.calendar.timezone}), a tick every {args.tick_every:g} s",
            file=out,
            flush=True,
        )
    receiver.start()
    try:
        serve(
            receiver.app,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            log_level=args.log_level,
            access_log=args.access_log,
            **timeouts,
        )
    except SystemExit as exc:  # uvicorn exits when it cannot start (e.g. the port is in use); it logged why
        return 1 if exc.code else 0
    return 0


def _cmd_foa(args: argparse.Namespace, out: TextIO) -> int:
    from atp.services.command import run_foa

    return run_foa(args, out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goflex-atp", description="GOFLEX ATP command line")
    parser.add_argument("--version", action="version", version=f"goflex-atp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    mib = {"type": int, "default": DEFAULT_MAX_BYTES // 2**20, "help": "largest input file in MiB (default 64)"}

    p = sub.add_parser("validate", help="validate Flex-Offer files (JSON, JSON list or JSONL)")
    p.add_argument("files", nargs="+", metavar="FILE", help="files, or folders of *.json / *.jsonl files")
    p.add_argument("--format", choices=["v1", "goflex"], default="v1", help="wire format v1 or GOFLEX fields")
    p.add_argument("--max-profile-days", type=float, default=7.0, help="longest allowed profile (default 7)")
    p.add_argument("--max-mib", **mib)
    p.set_defaults(run=_cmd_validate)

    p = sub.add_parser("check-schedule", help="check schedules for feasibility against their offers")
    p.add_argument("offers", metavar="OFFERS", help="a file of offers or a folder of them")
    p.add_argument("schedules", metavar="SCHEDULES")
    p.add_argument("--max-mib", **mib)
    p.set_defaults(run=_cmd_check_schedule)

    p = sub.add_parser("convert", help="convert between wire format v1 and the GOFLEX field format")
    p.add_argument("--from", dest="from_format", choices=["v1", "goflex"], required=True)
    p.add_argument("--to", dest="to_format", choices=["v1", "goflex"], required=True)
    p.add_argument("--lossy", action="store_true", help="drop what GOFLEX cannot hold instead of failing")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT", type=Path)
    p.add_argument("--max-mib", **mib)
    p.set_defaults(run=_cmd_convert)

    p = sub.add_parser("schema", help="print the JSON Schema of the wire format")
    p.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    p.set_defaults(run=_cmd_schema)

    p = sub.add_parser("serve", help="run a receiver (FMAN or FMAR) as an HTTP service (docs/interface.md)")
    p.add_argument("--role", choices=["fman", "fmar"], required=True, help="which receiver to run")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--tokens", type=Path, required=True, help="YAML file: bearer tokens of parties and operators")
    p.add_argument("--contracts", type=Path, help="YAML file: the parties' contracts (fman only)")
    p.add_argument("--certfile", type=Path, help="PEM certificate: switches TLS on (with --keyfile)")
    p.add_argument("--keyfile", type=Path, help="PEM private key of --certfile")
    p.add_argument(
        "--store",
        metavar="URL",
        help="where the offers are kept: sqlite:///PATH (default sqlite:///atp-ROLE.db in the working folder), "
        "postgresql://USER@HOST:PORT/DATABASE, or memory (lost at exit)",
    )
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"], default="info")
    p.add_argument(
        "--access-log", action="store_true", help="log one line per request (off by default: it costs throughput)"
    )
    p.add_argument("--prices", type=Path, help="CSV time,eur_per_kwh: the fman plans its offers against these")
    p.add_argument("--plan-every", type=float, default=900.0, help="seconds between planning rounds (default 900)")
    p.add_argument("--horizon-steps", type=int, default=96, help="planning horizon in steps (default 96)")
    for flag, field, _, text in _LIMIT_OPTIONS + _CONNECTION_OPTIONS:
        p.add_argument(flag, dest=field, metavar="S" if flag.endswith("-s") else "N", help=text)
    from atp.services.command import add_foa_arguments, add_receiver_arguments

    add_receiver_arguments(p)
    p.set_defaults(run=_cmd_serve)

    p = sub.add_parser("foa", help="run a stand-alone FOA from its configuration file (atp/foa/README.md)")
    add_foa_arguments(p)
    p.set_defaults(run=_cmd_foa)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        return int(args.run(args, stream))
    except _OptionError as exc:
        print(f"goflex-atp: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValidationError) as exc:
        print(f"goflex-atp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("goflex-atp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
