"""The options of `goflex-atp serve` that compose a receiver (`atp.services.receivers`), and the
`goflex-atp foa` command (a stand-alone FOA, `atp.foa.service`).

    goflex-atp serve --role fman --tokens t.yaml --prices prices.csv \\
        --market http://127.0.0.1:8081 --market-party fman-1 --market-token-file fman-at-fmar.token
    goflex-atp serve --role fmar --tokens t.yaml --mechanism many_to_many \\
        --timezone Europe/Zurich --day-ahead-gate 12:00 --intraday-gates 06:00,12:00,18:00
    goflex-atp foa --config prosumer.yaml --token-file foa.token --devices devices/ --data data/

Every wrong option is one sentence naming it (`ServeConfigError`, exit code 1).
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from atp.errors import ValidationError
from atp.flexoffer.codec import parse_wire_time
from atp.interface.clock import OperatorClock
from atp.interface.serve import ServeConfigError
from atp.services.receivers import FmanOptions, Receiver, build_fman, build_fmar

__all__ = [
    "add_foa_arguments",
    "add_receiver_arguments",
    "mqtt_gateway",
    "receiver_clock",
    "receiver_for",
    "run_foa",
]

_FMAN_ONLY = (
    "market",
    "bid_cost",
    "bid_margin",
    "bid_max_volume",
    "bid_reference",
    "market_party",
    "market_token_file",
    "prices",
    "series",
    "objective",
    "time_limit_s",
    "start_tolerance_s",
    "max_group_size",
    "min_box_share",
    "issuer",
)
_FMAR_ONLY = ("mechanism", "timezone", "day_ahead_gate", "intraday_gates", "intraday_lead_s", "local_gate_after_s")


def add_receiver_arguments(p: argparse.ArgumentParser) -> None:
    """The serve command's options for the receiver's clock, an FMAN's planning and market, and
    an FMAR's calendar."""
    clock = p.add_argument_group("clock: whose time the receiver runs on")
    clock.add_argument(
        "--clock",
        choices=["wall", "operator"],
        default="wall",
        help="wall (default): its loops run by themselves; operator: its time is what the operator sets "
        "(PUT /operator/clock) and it runs its rounds only when asked (docs/interface.md, Operator rounds)",
    )
    clock.add_argument("--clock-start", metavar="TIME", help="an operator clock's first time (default: now)")
    clock.add_argument("--name", help="the receiver's name, in its offer ids (default: the role)")
    clock.add_argument(
        "--numbered-ids",
        action="store_true",
        help="number offers fo-ROLE-000001, ... in order (reproducible runs) instead of opaque ids",
    )
    broker = p.add_argument_group("mqtt: the MQTT binding beside HTTP (docs/spec/interface.md, MQTT binding)")
    broker.add_argument("--mqtt", metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT of the broker")
    broker.add_argument("--mqtt-username", help="the receiver's user at the broker")
    broker.add_argument("--mqtt-password-file", type=Path, help="file holding that user's password")
    broker.add_argument("--mqtt-ca-file", type=Path, help="PEM CA of the broker's certificate (mqtts)")
    broker.add_argument("--mqtt-cert-file", type=Path, help="PEM client certificate (mqtts)")
    broker.add_argument("--mqtt-key-file", type=Path, help="PEM key of --mqtt-cert-file")
    plan = p.add_argument_group("fman: planning")
    plan.add_argument("--issuer", help="the FMAN's name as the issuer of its aggregates (default: --name)")
    plan.add_argument("--objective", help="planning objective (default least_cost; docs/fman.md)")
    plan.add_argument("--series", type=Path, help="CSV time,base_kwh,target_kwh,...: what the objective needs")
    plan.add_argument("--time-limit-s", type=float, help="solver time limit per round (default 30)")
    plan.add_argument("--start-tolerance-s", type=int, help="members' earliest starts may differ this much (3600)")
    plan.add_argument("--max-group-size", type=int, help="most members per aggregate (default 50)")
    plan.add_argument(
        "--min-box-share", help="a member keeping less flexibility keeps its profile (0.9; none: box every member)"
    )
    fman = p.add_argument_group("fman: bidding into a market")
    fman.add_argument("--market", metavar="URL", help="the FMAR this FMAN bids its direct offers into")
    fman.add_argument("--market-party", metavar="NAME", help="this FMAN's party name at the market")
    fman.add_argument("--market-token-file", type=Path, metavar="PATH", help="file holding this FMAN's token there")
    fman.add_argument("--bid-cost", type=float, help="EUR/kWh of adaptation for members without a price (0.05)")
    fman.add_argument("--bid-margin", type=float, help="EUR/kWh added to every bid price (0)")
    fman.add_argument("--bid-max-volume", type=float, help="most flexible kWh bid per gate (default: no cap)")
    fman.add_argument("--bid-reference", type=float, help="EUR/kWh a bid must beat (default: the --prices feed)")
    fmar = p.add_argument_group("fmar: the market's calendar and clearing")
    fmar.add_argument("--mechanism", help="clearing mechanism (default one_sided_pool; see docs/market.md)")
    fmar.add_argument("--timezone", help="the market's local time zone (default UTC)")
    fmar.add_argument("--day-ahead-gate", metavar="HH:MM", help="day-ahead gate, the day before (default 12:00)")
    fmar.add_argument("--intraday-gates", metavar="HH:MM,...", help="intraday gates of each day (default none)")
    fmar.add_argument("--intraday-lead-s", type=int, help="delivery starts this long after a gate (default 3600)")
    fmar.add_argument("--local-gate-after-s", type=int, help="a DSO local session's gate after it registers (0)")
    p.add_argument("--tick-every", type=float, default=5.0, help="seconds between the market's ticks (default 5)")
    p.add_argument("--lifecycle-every", type=float, default=60.0, help="seconds between life-cycle rounds (60)")


def _clock_time(option: str, text: str) -> time:
    try:
        return time.fromisoformat(text.strip())
    except ValueError:
        raise ServeConfigError(f"{option} {text}: not a time of day HH:MM") from None


def receiver_clock(args: argparse.Namespace) -> Callable[[], datetime]:
    """The receiver's clock `--clock` and `--clock-start` name."""
    if args.clock == "wall":
        if args.clock_start is not None:
            raise ServeConfigError("--clock-start: only an operator clock (--clock operator) has a start")
        return lambda: datetime.now(UTC)
    start = datetime.now(UTC)
    if args.clock_start is not None:
        try:
            start = parse_wire_time(args.clock_start)
        except ValueError:
            raise ServeConfigError(f"--clock-start {args.clock_start}: not an ISO 8601 time with a timezone") from None
    return OperatorClock(start)


def _bidding(args: argparse.Namespace) -> dict[str, Any]:
    """The FMAN's bidding options (FmanOptions fields) from the command line."""
    from atp.fman import BiddingParams

    given = {"cost_eur_per_kwh": args.bid_cost, "margin_eur_per_kwh": args.bid_margin}
    given = {k: v for k, v in given.items() if v is not None}
    if args.bid_max_volume is not None:
        given["max_volume_kwh"] = args.bid_max_volume
    out: dict[str, Any] = {}
    if given:
        try:
            out["bidding"] = BiddingParams(**given)
        except ValidationError as exc:
            raise ServeConfigError(f"--bid-*: {exc}") from None
    if args.bid_reference is not None:
        if not args.bid_reference >= 0:
            raise ServeConfigError(f"--bid-reference {args.bid_reference}: must be a price of at least 0 EUR/kWh")
        out["reference_eur_per_kwh"] = args.bid_reference
    return out


def _fman_planning(args: argparse.Namespace) -> dict[str, Any]:
    """The FMAN's planning options (FmanOptions fields) from the command line."""
    from atp.fman import OBJECTIVES, AggregationParams
    from atp.fman.planning_problem import objective_names
    from atp.fman.service import load_series

    out: dict[str, Any] = {"issuer": args.issuer} if args.issuer else {}
    if args.objective is not None:
        known = sorted({*OBJECTIVES, *objective_names()})
        if args.objective not in known:
            raise ServeConfigError(f"--objective {args.objective}: not one of {', '.join(known)}")
        out["objective"] = args.objective
    if args.series is not None:
        out["series_kwh"] = load_series(args.series)
    if args.time_limit_s is not None:
        if not args.time_limit_s > 0:
            raise ServeConfigError(f"--time-limit-s {args.time_limit_s}: must be a positive number of seconds")
        out["time_limit_s"] = args.time_limit_s
    given: dict[str, Any] = {"start_tolerance_s": args.start_tolerance_s, "max_group_size": args.max_group_size}
    given = {k: v for k, v in given.items() if v is not None}
    if args.min_box_share is not None:
        text = args.min_box_share.strip().lower()
        try:
            given["min_box_share"] = None if text == "none" else float(text)
        except ValueError:
            raise ServeConfigError(f"--min-box-share {args.min_box_share}: a share in [0, 1] or none") from None
    try:
        out["aggregation"] = AggregationParams(**given)
    except ValidationError as exc:
        raise ServeConfigError(f"aggregation options: {exc}") from None
    return out


def receiver_for(
    args: argparse.Namespace,
    store: Any,
    *,
    tokens: Any,
    contracts: Any,
    limits: Any,
    clock: Callable[[], datetime],
) -> Receiver:
    """The receiver `args.role` names, over `store`, on `clock`, with the options that fit it."""
    from atp.fman.service import load_prices

    wrong = _FMAR_ONLY if args.role == "fman" else _FMAN_ONLY
    for name in wrong:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            if name == "prices":
                raise ServeConfigError("--prices: only an fman plans; a market (fmar) clears sessions instead")
            raise ServeConfigError(f"{flag}: not an option of a {args.role}")
    if args.role == "fman":
        prices = load_prices(args.prices) if args.prices is not None else None
        token = None
        if args.market is not None:
            if prices is None or args.market_party is None or args.market_token_file is None:
                raise ServeConfigError("--market: an fman bids with --prices, --market-party and --market-token-file")
            try:
                token = args.market_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ServeConfigError(f"--market-token-file {args.market_token_file}: {exc.strerror}") from None
        bidding = _bidding(args)
        if bidding and args.market is None:
            raise ServeConfigError("--bid-*: an fman bids only into a market (--market URL)")
        options = FmanOptions(
            **bidding,
            prices=prices,
            plan_every_s=args.plan_every,
            horizon_steps=args.horizon_steps,
            lifecycle_every_s=args.lifecycle_every,
            market_url=args.market,
            market_token=token,
            market_party=args.market_party,
            **_fman_planning(args),
        )
        return build_fman(store, tokens=tokens, contracts=contracts, limits=limits, options=options, clock=clock)
    from atp.fmar import MarketCalendar, mechanism_names

    mechanism = args.mechanism or "one_sided_pool"
    if mechanism not in mechanism_names():
        raise ServeConfigError(f"--mechanism {mechanism}: not one of {', '.join(mechanism_names())}")
    try:
        zone = ZoneInfo(args.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ServeConfigError(f"--timezone {args.timezone}: not a known time zone (e.g. Europe/Zurich)") from None
    gates = tuple(_clock_time("--intraday-gates", g) for g in (args.intraday_gates or "").split(",") if g.strip())
    calendar = MarketCalendar(
        zone,
        day_ahead_gate=_clock_time("--day-ahead-gate", args.day_ahead_gate or "12:00"),
        intraday_gates=gates,
        intraday_lead_s=args.intraday_lead_s if args.intraday_lead_s is not None else 3600,
        local_gate_after_s=args.local_gate_after_s or 0,
    )
    if not args.tick_every > 0:
        raise ServeConfigError(f"--tick-every {args.tick_every}: must be a positive number of seconds")
    return build_fmar(
        store,
        tokens=tokens,
        calendar=calendar,
        mechanism=mechanism,
        limits=limits,
        tick_every_s=args.tick_every,
        clock=clock,
    )


# -- goflex-atp foa ------------------------------------------------------------------------------
def add_foa_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `goflex-atp foa`."""
    p.add_argument("--config", type=Path, required=True, help="the FOA's configuration (examples/foa/prosumer.yaml)")
    p.add_argument("--token-file", type=Path, required=True, help="file holding the FOA's token at its receiver")
    p.add_argument("--devices", type=Path, required=True, help="folder: readings.json, setpoints.jsonl, metered.csv")
    p.add_argument("--data", help="external data: a folder of files, or the URL of a data service")
    p.add_argument("--data-token-file", type=Path, help="file holding the token of the data service")
    p.add_argument("--every", type=float, help="seconds between ticks (default: the FOA's slice_s)")
    p.add_argument("--status-port", type=int, default=0, help="port of GET /status (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address of the status endpoint (default 127.0.0.1)")
    p.add_argument(
        "--clock",
        choices=["wall", "operator"],
        default="wall",
        help="wall (default): a tick every --every seconds; operator: a tick when the operator posts "
        "POST /tick {now} to the status endpoint (with --operator-token-file), events read at each tick",
    )
    p.add_argument("--operator-token-file", type=Path, help="file holding the token that may post /tick")
    p.add_argument("--mqtt-username", help="the box's user at the broker (receiver mqtt://...)")
    p.add_argument("--mqtt-password-file", type=Path, help="file holding that user's password")
    p.add_argument("--mqtt-ca-file", type=Path, help="PEM CA of the broker's certificate (mqtts://...)")


def _secret(option: str, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServeConfigError(f"{option} {path}: {exc.strerror}") from None


def _foa_client(receiver: str, token: str, *, party: str, args: argparse.Namespace) -> Any:
    """The FOA's exchange client: HTTP for an http(s) URL, MQTT for `mqtt(s)://BROKER:PORT/RECEIVER`
    (a box: its user and password at the broker from --mqtt-username / --mqtt-password-file)."""
    from atp.interface import HttpClient

    if not receiver.startswith(("mqtt://", "mqtts://")):
        return HttpClient(receiver, token, party=party)
    from atp.interface.errors import CommunicationError
    from atp.interface.mqtt import MqttClient, MqttSettings

    try:
        settings, name = MqttSettings.for_receiver(
            receiver,
            username=args.mqtt_username,
            password=_secret("--mqtt-password-file", args.mqtt_password_file),
            **({"ca_file": str(args.mqtt_ca_file)} if args.mqtt_ca_file is not None else {}),
        )
        return MqttClient(settings, receiver=name, token=token, party=party)
    except (ValueError, CommunicationError) as exc:
        raise ServeConfigError(f"prosumer.receiver {receiver}: {exc}") from None


def run_foa(args: argparse.Namespace, out: TextIO) -> int:
    """Run a stand-alone FOA until interrupted (SIGINT or SIGTERM)."""
    from atp.data import FileDataSource, HttpDataSource
    from atp.foa.config import load_config
    from atp.foa.service import FileDeviceIO, FoaLoop, FoaService, create_status_app
    from atp.interface.polled import PolledClient
    from atp.interface.serve import ServerThread

    config = load_config(args.config)
    if not config.prosumer.receiver_is_url:
        raise ServeConfigError(
            f"{args.config}: prosumer.receiver {config.prosumer.receiver!r} is not an http(s) or mqtt(s) URL"
        )
    token = _secret("--token-file", args.token_file) or ""
    data: Any = None
    if args.data is not None:
        if args.data.startswith(("http://", "https://")):
            data = HttpDataSource(args.data, _secret("--data-token-file", args.data_token_file))
        else:
            data = FileDataSource(args.data)
    client = _foa_client(config.prosumer.receiver, token, party=config.prosumer.issuer, args=args)
    operator_token = _secret("--operator-token-file", args.operator_token_file)
    if (args.clock == "operator") != (operator_token is not None):
        raise ServeConfigError("--clock operator and --operator-token-file go together (who may post /tick)")
    exchange: Any = client if operator_token is None else PolledClient(client)
    service = FoaService(config, exchange, FileDeviceIO(args.devices), data=data)
    events = exchange.poll if operator_token is not None else None
    app = create_status_app(service, operator_token=operator_token, events=events)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with ServerThread(app, host=args.host, port=args.status_port) as status:
        print(
            f"foa {config.prosumer.issuer} -> {config.prosumer.receiver}, {len(config.devices)} devices, "
            f"status on {status.url}/status",
            file=out,
            flush=True,
        )
        if operator_token is not None:  # the operator ticks it (POST /tick)
            stop.wait()
        else:
            with FoaLoop(service, **({"every_s": args.every} if args.every is not None else {})):
                stop.wait()
    service.agent.close()
    client.close()
    return 0


def mqtt_gateway(args: argparse.Namespace, receiver: Receiver, *, name: str, tokens: Any) -> Any:
    """The receiver's MQTT gateway `--mqtt` asks for, started (None without `--mqtt`)."""
    from atp.interface.mqtt import MqttGateway, MqttSettings

    if args.mqtt is None:
        for flag in ("mqtt_username", "mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file"):
            if getattr(args, flag) is not None:
                raise ServeConfigError(f"--{flag.replace('_', '-')}: only with --mqtt URL")
        return None
    files = {"ca_file": args.mqtt_ca_file, "cert_file": args.mqtt_cert_file, "key_file": args.mqtt_key_file}
    for key, path in files.items():
        if path is not None and not path.is_file():
            raise ServeConfigError(f"--mqtt-{key.replace('_', '-')} {path}: no such file")
    try:
        settings = MqttSettings.from_url(
            args.mqtt,
            username=args.mqtt_username,
            password=_secret("--mqtt-password-file", args.mqtt_password_file),
            **{k: str(v) for k, v in files.items() if v is not None},
        )
    except ValueError as exc:
        raise ServeConfigError(f"--mqtt: {exc}") from None
    from atp.interface.errors import CommunicationError

    try:
        return MqttGateway(receiver.app, receiver.store, receiver=name, tokens=tokens, settings=settings).start()
    except CommunicationError as exc:
        raise ServeConfigError(f"--mqtt {args.mqtt}: {exc}") from None
