"""``chime``: one console script for every service and tool. Each subcommand imports only what it runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from shared.version import chime_version

if TYPE_CHECKING:
    from shared.settings import Settings


def _settings() -> Settings:
    from shared.logs import configure_logging
    from shared.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def cmd_api(_: argparse.Namespace) -> int:
    from services.api.main import main

    main(_settings())
    return 0


def cmd_planner(_: argparse.Namespace) -> int:
    from services.planner.main import main

    main(_settings())
    return 0


def cmd_executor(_: argparse.Namespace) -> int:
    from services.executor.main import main

    main(_settings())
    return 0


def cmd_recorder(_: argparse.Namespace) -> int:
    from services.api.recorder import main

    main(_settings())
    return 0


def cmd_dlq(_: argparse.Namespace) -> int:
    from services.dlq.service import main

    main(_settings())
    return 0


def cmd_resync(args: argparse.Namespace) -> int:
    import asyncio

    from services.api.db.flow_limits_repo import FlowLimitRepository
    from services.api.db.keys_repo import SigningKeyRepository
    from services.api.db.schedules_repo import ScheduleRepository
    from shared.db.engine import create_engine

    settings = _settings()

    def nothing() -> None:
        """The relay that publishes the outbox runs in the API; it finds the rows at its next look."""

    async def resync() -> tuple[int, int, int]:
        engine = create_engine(settings)
        try:
            keys = await SigningKeyRepository(engine, settings, nothing).resync(args.tenant)
            limits = await FlowLimitRepository(engine, settings.default_flow_concurrency, nothing).resync(args.tenant)
            scheduled = await ScheduleRepository(engine, settings, nothing).resync(args.tenant)
            return keys, limits, scheduled
        finally:
            await engine.dispose()

    keys, limits, scheduled = asyncio.run(resync())
    print(
        f"queued the signing keys of {keys} tenant(s), {limits} flow limit(s) and {scheduled} schedule(s) in the "
        "outbox; the API's relay publishes them to Kafka"
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import uuid
    from datetime import datetime

    from services import replay

    settings = _settings()
    if args.source == "dlq":
        schedule = uuid.UUID(args.schedule) if args.schedule else None
        count = replay.run_dlq(
            settings, tenant=args.tenant, schedule_id=schedule, http_status=args.status_code, limit=args.limit
        )
        print(f"requested {count} replay(s)")
        return 0
    if not args.topic or not args.from_time:
        print("chime replay topic: give a topic and --from-time", file=sys.stderr)
        return 2
    topic = args.topic if args.topic.startswith(settings.topic_prefix) else settings.topic_prefix + args.topic
    target = None
    if args.to_topic:
        target = (
            args.to_topic if args.to_topic.startswith(settings.topic_prefix) else settings.topic_prefix + args.to_topic
        )
    rng = replay.TopicRange(
        topic=topic,
        since=datetime.fromisoformat(args.from_time),
        until=datetime.fromisoformat(args.to_time) if args.to_time else None,
        schedule_id=args.schedule,
        tenant=args.tenant,
        target=target,
        dry_run=args.dry_run,
    )
    count = replay.run_topic(settings, rng)
    print(f"{'would re-publish' if args.dry_run else 're-published'} {count} record(s) from {topic}")
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    from services.api.migrate import main

    main(_settings())
    print("database schema is up to date")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from shared.topics import create_topics

    created = asyncio.run(create_topics(_settings()))
    print(f"created {len(created)} topic(s): {', '.join(created)}" if created else "all topics exist")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from services.api.app import create_app
    from services.api.openapi import COMMITTED, render
    from shared.settings import load_settings

    document = render(create_app(load_settings(_env_file=None)))
    stale = not COMMITTED.exists() or COMMITTED.read_text() != document
    return _generated(args.check, COMMITTED, stale, lambda: COMMITTED.write_text(document), "chime openapi")


def cmd_setup(_: argparse.Namespace) -> int:
    from services.api.migrate import main as migrate
    from shared.topics import create_topics

    settings = _settings()
    migrate(settings)
    created = asyncio.run(create_topics(settings))
    print(
        f"database schema is up to date; created {len(created)} topic(s)"
        if created
        else "database and topics are set up"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.devstack.demo import run_demo

    return run_demo(_settings(), api_url=args.api_url, hook_url=args.hook_url, port=args.port)


def cmd_token(args: argparse.Namespace) -> int:
    from services.api.auth import mint_token

    print(mint_token(_settings(), tenant=args.tenant, subject=args.sub, scope=args.scope, ttl_seconds=args.ttl))
    return 0


def cmd_dev(_: argparse.Namespace) -> int:
    from services.devstack.dev import run_dev

    return run_dev()


def cmd_stack(args: argparse.Namespace) -> int:
    from services.devstack import stack

    if args.action == "up":
        result = stack.up(with_postgres=not args.kafka_only)
        for key, value in result.env.items():
            print(f"{key}={value}")
        return 0
    if args.action == "down":
        stack.down_all()
        return 0
    command = [c for c in args.command if c != "--"]
    if not command:
        print("chime stack exec: give a command after --", file=sys.stderr)
        return 2
    return stack.exec_with_stack(command)


def cmd_health(args: argparse.Namespace) -> int:
    from services.healthcheck import check

    ok, line = check(_settings(), args.service)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_schema(args: argparse.Namespace) -> int:
    from shared.events.docs import COMMITTED, stale, write

    outdated = stale()
    target = f"{COMMITTED} ({', '.join(outdated)})" if outdated else str(COMMITTED)
    return _generated(args.check, target, bool(outdated), lambda: write(COMMITTED), "chime schema export")


def cmd_docs(args: argparse.Namespace) -> int:
    from services.readme_tables import README, render

    current = README.read_text()
    wanted = render(current, build_parser())
    return _generated(args.check, README, current != wanted, lambda: README.write_text(wanted), "chime docs")


def _generated(check: bool, target: object, stale: bool, write: Callable[[], object], command: str) -> int:
    """A generated file: with ``--check``, say whether it is current (exit 1 when stale); otherwise write it."""
    if check:
        if stale:
            print(f"{target} is stale; `{command}` writes it", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    write()
    print(f"wrote {target}")
    return 0


SERVICES = ("api", "planner", "executor", "recorder", "dlq")


def _subcommand(
    parent: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose description is its one-line help, as a sentence."""
    cmd = parent.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".", **kwargs)
    cmd.set_defaults(func=func)
    return cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chime", description="Chime: multi-tenant webhook scheduler on Kafka")
    parser.add_argument("--version", action="version", version=f"chime {chime_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        return _subcommand(sub, name, help_text, func)

    command("api", "serve the REST API on CHIME_API_HOST:CHIME_API_PORT", cmd_api)
    command("planner", "run the planner: keeps the schedules, publishes run.due on time", cmd_planner)
    command("executor", "run the executor: calls the webhooks, retries, dead-letters", cmd_executor)
    command("recorder", "run the recorder: writes run history from Kafka into Postgres", cmd_recorder)
    command("dlq", "run the dead-letter service: keeps dead runs, replays them on request", cmd_dlq)
    command("migrate", "migrate the database to the newest schema (safe from several replicas)", cmd_migrate)
    command("setup", "migrate the database, then create missing topics (run on every install and upgrade)", cmd_setup)
    topics = command("topics", "manage Kafka topics", cmd_topics)
    topics.add_argument("action", choices=["create"], help="create: make the topics that are missing")
    health = command("health", "check a service's liveness (/health) on this host: the image's HEALTHCHECK", cmd_health)
    health.add_argument(
        "service", nargs="?", choices=SERVICES, help="which service (default: the one this container runs)"
    )
    oa = command("openapi", "write the API's OpenAPI 3.1 document to docs/openapi.json", cmd_openapi)
    oa.add_argument("--check", action="store_true", help="only check that the committed document is current")
    schema = command("schema", "the event contracts: JSON Schemas and the AsyncAPI document in docs/events", cmd_schema)
    schema_actions = schema.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _subcommand(
        schema_actions, "export", "write docs/events (JSON Schemas, asyncapi.json) from the event models", cmd_schema
    )
    export.add_argument("--check", action="store_true", help="only check that the committed files are current")
    docs = command("docs", "rewrite README.md's generated tables (commands and settings)", cmd_docs)
    docs.add_argument("--check", action="store_true", help="only check that they are current")
    token = command("token", "print a development JWT signed with CHIME_JWT_SECRET", cmd_token)
    token.add_argument("--tenant", required=True, metavar="TENANT", help="the tenant the token acts for")
    token.add_argument("--sub", default="dev", metavar="SUBJECT", help="the token's subject (default: dev)")
    token.add_argument(
        "--scope", default=None, metavar="SCOPES", help="space-separated scopes (default: all but admin)"
    )
    token.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="lifetime in seconds (default: 3600)")
    rp = command("replay", "re-publish dead runs, or a time range of a topic, with filters", cmd_replay)
    rp.add_argument("source", choices=["dlq", "topic"], help="dlq: dead runs; topic: a time range of a topic")
    rp.add_argument("topic", nargs="?", metavar="TOPIC", help="topic (with or without the prefix), for `replay topic`")
    rp.add_argument("--from-time", metavar="TIME", help="RFC 3339 start (topic)")
    rp.add_argument("--to-time", metavar="TIME", help="RFC 3339 end, exclusive (topic; default: now)")
    rp.add_argument("--to-topic", metavar="TOPIC", help="publish to this topic instead of the source (topic)")
    rp.add_argument("--dry-run", action="store_true", help="count, do not publish (topic)")
    rp.add_argument("--tenant", metavar="TENANT", help="only this tenant's runs")
    rp.add_argument("--schedule", metavar="ID", help="only this schedule's runs (its id)")
    rp.add_argument("--status-code", type=int, metavar="CODE", help="last HTTP status (dlq)")
    rp.add_argument("--limit", type=int, default=1000, metavar="N", help="at most this many (dlq; default: 1000)")
    rs = command(
        "resync",
        "publish signing keys, flow limits and schedules to Kafka again from Postgres (after a broker lost its data)",
        cmd_resync,
    )
    rs.add_argument("--tenant", metavar="TENANT", help="only this tenant's")
    command("dev", "run the whole local stack in the foreground, with a demo schedule (make run)", cmd_dev)
    demo = command(
        "demo", "serve a webhook receiver that logs to stdout, and create a demo schedule firing into it", cmd_demo
    )
    demo.add_argument("--api-url", default="http://api:8000", metavar="URL", help="the API (default: http://api:8000)")
    demo.add_argument(
        "--hook-url", default="http://demo:9000/hook", metavar="URL", help="this receiver as the executor reaches it"
    )
    demo.add_argument("--port", type=int, default=9000, help="port to listen on (default: 9000)")
    stack = command("stack", "local Kafka and Postgres: up, down, or exec a command with them", cmd_stack)
    actions = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = _subcommand(actions, "up", "start (or reuse) the local broker and database; print their settings", cmd_stack)
    up.add_argument("--kafka-only", action="store_true", help="the broker alone")
    _subcommand(actions, "down", "stop the local broker and database", cmd_stack).set_defaults(kafka_only=False)
    run = _subcommand(
        actions,
        "exec",
        "run a command with the stack up (stopped afterwards if this started it)",
        cmd_stack,
        usage="chime stack exec [-h] -- COMMAND [ARG ...]",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    run.set_defaults(kafka_only=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad settings, and bad arguments to a tool, end in one line on stderr and exit 1; a service
    that fails at run time keeps its traceback."""
    from pydantic import ValidationError

    from shared.errors import ChimeError

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (ChimeError, ValidationError, ValueError) as exc:
        if args.command in SERVICES and not isinstance(exc, ChimeError | ValidationError):
            raise
        print(f"chime {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"CHIME_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
