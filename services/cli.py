"""``chime``: one console script for every service and tool. Each subcommand imports only what it runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    if args.check:
        if not COMMITTED.exists() or COMMITTED.read_text() != document:
            print(f"{COMMITTED} is stale; `chime openapi` writes it", file=sys.stderr)
            return 1
        print(f"{COMMITTED} is up to date")
        return 0
    COMMITTED.write_text(document)
    print(f"wrote {COMMITTED}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chime", description="Chime: multi-tenant webhook scheduler on Kafka")
    parser.add_argument("--version", action="version", version=f"chime {chime_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the REST API").set_defaults(func=cmd_api)
    sub.add_parser("planner", help="run the planner (Faust worker)").set_defaults(func=cmd_planner)
    sub.add_parser("executor", help="run the webhook executor").set_defaults(func=cmd_executor)
    sub.add_parser("recorder", help="record run history from Kafka into Postgres").set_defaults(func=cmd_recorder)
    sub.add_parser("dlq", help="run the dead-letter service").set_defaults(func=cmd_dlq)
    sub.add_parser("migrate", help="migrate the database to the newest schema").set_defaults(func=cmd_migrate)
    topics = sub.add_parser("topics", help="manage Kafka topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=cmd_topics)
    oa = sub.add_parser("openapi", help="write the API's OpenAPI document to docs/openapi.json")
    oa.add_argument("--check", action="store_true", help="only check that the committed document is current")
    oa.set_defaults(func=cmd_openapi)
    token = sub.add_parser("token", help="print a development JWT signed with CHIME_JWT_SECRET")
    token.add_argument("--tenant", required=True)
    token.add_argument("--sub", default="dev")
    token.add_argument("--scope", default=None, help="space-separated scopes (default: all but admin)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)
    rp = sub.add_parser("replay", help="re-publish dead runs, or a time range of a topic, with filters")
    rp.add_argument("source", choices=["dlq", "topic"])
    rp.add_argument("topic", nargs="?", help="topic (with or without the prefix), for `replay topic`")
    rp.add_argument("--from-time", help="RFC 3339 start (topic)")
    rp.add_argument("--to-time", help="RFC 3339 end, exclusive (topic; default: now)")
    rp.add_argument("--to-topic", help="publish to this topic instead of the source (topic)")
    rp.add_argument("--dry-run", action="store_true", help="count, do not publish (topic)")
    rp.add_argument("--tenant")
    rp.add_argument("--schedule")
    rp.add_argument("--status-code", type=int, help="last HTTP status (dlq)")
    rp.add_argument("--limit", type=int, default=1000, help="at most this many (dlq)")
    rp.set_defaults(func=cmd_replay)
    sub.add_parser("dev", help="run the whole local stack in the foreground").set_defaults(func=cmd_dev)
    stack = sub.add_parser("stack", help="local Kafka and Postgres: up, down, or exec a command with them")
    actions = stack.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start (or reuse) the local broker and database; print their settings")
    up.add_argument("--kafka-only", action="store_true", help="the broker alone")
    up.set_defaults(func=cmd_stack)
    actions.add_parser("down", help="stop the local broker and database").set_defaults(func=cmd_stack, kafka_only=False)
    run = actions.add_parser(
        "exec",
        help="run a command with the stack up (stopped afterwards if this started it)",
        usage="chime stack exec [-h] -- COMMAND [ARG ...]",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    run.set_defaults(func=cmd_stack, kafka_only=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
