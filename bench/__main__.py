"""`make bench`: Chime's targets, measured on this machine, beside APScheduler 3.x run in the same call.

Scenarios (each bounded in time; bench/README.md explains every figure):
- steady: N interval schedules every 10 s, spread evenly (N/10 fires per second); webhook lag, misses, repeats,
  CPU per fire per process.
- burst: N interval schedules all due at the same instants; how long after each instant the last call arrives.
- api: creates paced at a fixed rate (latency p99), then change propagation (API 2xx → planner acted).
- ramp (only with --scenario ramp): steady at rising rates until p99 lag passes 50 ms or fires are missed.
- scale (only with --scenario scale, or at toy size with --smoke): 1M schedules in one planner; its RSS, and the
  first on-time fire after a SIGKILL, with nothing lost around the kill.

``--smoke`` runs every scenario but ramp at toy sizes in about two minutes: it proves the harness still produces
every figure (``make test`` runs it), not how fast anything is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scale import chime_scale
from bench.scenarios import API_WARMUP_S, Env, chime_api, chime_bulk, chime_interval, peer_interval
from bench.sink import BenchSink
from shared import eventloop
from shared.kafka import admin_client
from shared.settings import load_settings

RESULTS = Path(__file__).parent / "results"
RAMP_P99_MS = 50.0


async def interval_scenario(
    env: Env, sink: BenchSink, schedules: int, interval: int, window: float, *, burst: bool
) -> dict[str, Any]:
    """Steady (anchors spread over the interval) or burst (one anchor), Chime then the peer."""
    return {
        "schedules": schedules,
        "interval_s": interval,
        "window_s": window,
        "chime": await chime_interval(env, sink, schedules, interval, window, burst=burst),
        "apscheduler": await peer_interval(sink, schedules, interval, window, burst=burst),
    }


async def ramp(env: Env, sink: BenchSink, start: int, step: int, stop: int, window: float) -> dict[str, Any]:
    steps = []
    best = 0.0
    for schedules in range(start, stop + 1, step):
        result = await chime_interval(env, sink, schedules, 10, window, burst=False)
        steps.append({"schedules": schedules, "chime": result})
        ok = result["missed"] == 0 and result["lag"].get("p99_ms", 1e9) <= RAMP_P99_MS
        if not ok:
            break
        best = result["rate_per_s"]
    return {"steps": steps, "highest_rate_per_s": best}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.2f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def table(results: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str, str, str, str]] = []
    s = results.get("steady")
    if s:
        c, p = s["chime"], s["apscheduler"]
        rate = f"{s['schedules'] / s['interval_s']:,.0f}/s"
        rows += [
            (
                f"lag p99 at {rate} (ms)",
                "≤ 10",
                _fmt(c["lag"].get("p99_ms")),
                _fmt(p["lag"].get("p99_ms")),
                _ratio(c["lag"].get("p99_ms"), p["lag"].get("p99_ms")),
            ),
            (
                f"lag p50 at {rate} (ms)",
                "",
                _fmt(c["lag"].get("p50_ms")),
                _fmt(p["lag"].get("p50_ms")),
                _ratio(c["lag"].get("p50_ms"), p["lag"].get("p50_ms")),
            ),
            (
                "delivered / expected",
                "all",
                f"{c['delivered']:,} / {c['expected']:,}",
                f"{p['delivered']:,} / {p['expected']:,}",
                _ratio(float(c["delivered"]), float(p["delivered"]) or None),
            ),
            ("repeated deliveries (same webhook-id)", "0", str(c["repeats"]), str(p["repeats"]), ""),
            (
                "CPU per fire, all Chime processes + Kafka (ms)",
                "≤ 0.5",
                _fmt(c["cpu_ms_per_fire"]),
                _fmt(p["cpu_ms_per_fire"]),
                _ratio(c["cpu_ms_per_fire"], p["cpu_ms_per_fire"]),
            ),
        ]
    b = results.get("burst")
    if b:
        c, p = b["chime"]["burst"], b["apscheduler"]["burst"]
        rows.append(
            (
                f"burst: {b['schedules']:,} due at once, last call after (s, median)",
                "≤ 2",
                _fmt(c["last_delivery_s"]),
                _fmt(p["last_delivery_s"]),
                _ratio(c["last_delivery_s"], p["last_delivery_s"]),
            )
        )
        rows.append(
            (
                "burst: delivered / expected",
                "all",
                f"{b['chime']['delivered']:,} / {b['chime']['expected']:,}",
                f"{b['apscheduler']['delivered']:,} / {b['apscheduler']['expected']:,}",
                "",
            )
        )
    a = results.get("api")
    if a:
        rows.append(
            (
                f"API create p99 at {a['achieved_per_s']:,.0f} req/s, {results['api_workers']} workers (ms)",
                "≤ 25 at 500/s",
                _fmt(a["create_latency"].get("p99_ms")),
                "n/a",
                "",
            )
        )
        rows.append(("change propagation p99 (ms)", "≤ 100", _fmt(a["propagation"].get("p99_ms")), "n/a", ""))
    bulk = results.get("bulk")
    if bulk:
        latest = bulk["latest_call_after_answer_ms"]
        stops = bulk["stops_in_kafka_after_answer_ms"]
        rows.append(
            (
                f"bulk pause of {bulk['schedules']:,}: last call after the answer (ms, worst of {len(latest)})",
                "≤ 100",
                _fmt(max(latest)),
                "n/a",
                "",
            )
        )
        rows.append(("bulk pause: stops in Kafka after the answer (ms, worst)", "", _fmt(max(stops)), "n/a", ""))
    r = results.get("ramp")
    rows.append(
        ("highest rate with p99 ≤ 50 ms (/s)", "≥ 2,000", _fmt(r["highest_rate_per_s"]) if r else "not run", "", "")
    )
    rows += scale_rows(results.get("scale"))
    widths = [
        max(len(row[i]) for row in [*rows, ("figure", "target", "chime", "apscheduler", "ratio")]) for i in range(5)
    ]
    head = ("figure", "target", "chime", "apscheduler", "ratio")
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return lines


def scale_rows(sc: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    if not sc:
        return [
            ("planner RSS at 1M schedules", "≤ 1 GiB", "not run (--scenario scale)", "", ""),
            ("planner SIGKILL at 1M → first on-time fire (s)", "≤ 60", "not run", "", ""),
        ]
    n = f"{sc['schedules']:,}"
    return [
        (f"planner RSS at {n} schedules (MiB)", "≤ 1,024", _fmt(sc["memory"]["rss_mib"]), "n/a", ""),
        (f"planner SIGKILL at {n} → ready (s)", "", _fmt(sc["ready_after_kill_s"]), "n/a", ""),
        (
            f"planner SIGKILL at {n} → first on-time fire (s)",
            "≤ 60",
            _fmt(sc["first_on_time_fire_after_kill_s"]),
            "n/a",
            "",
        ),
        (
            "fires around the kill: missing / expected",
            "0",
            f"{sc['missing_around_kill']:,} / {sc['expected_around_kill']:,}",
            "n/a",
            "",
        ),
    ]


def cpu_lines(results: dict[str, Any]) -> list[str]:
    out = []
    for name in ("steady", "burst"):
        scenario = results.get(name)
        if scenario:
            for side in ("chime", "apscheduler"):
                cpu = scenario[side]["cpu_percent"]
                out.append(f"{name} {side} CPU (% of one core): " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))
            for side in ("chime", "apscheduler"):
                stalls = scenario[side]["sink_stall_ms_by_second"]
                if stalls:
                    worst = max(range(len(stalls)), key=stalls.__getitem__)
                    out.append(f"{name} {side} sink's worst loop stall: {stalls[worst]:.0f} ms (second {worst})")
    api = results.get("api")
    if api:
        per_create = api["cpu_ms_per_create"]
        out.append("api CPU per create (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in per_create.items()))
        by_second = api["create_latency_by_second"]
        out.append(
            "api create p99 per second (ms): " + ", ".join(f"{s['p99_ms']:.0f}" for s in by_second if s["count"] > 1)
        )
        stalls = api.get("generator_stall_ms_by_second")
        if stalls:
            out.append("load generator's worst loop stall per second (ms): " + ", ".join(f"{s:.0f}" for s in stalls))
    return out


async def foreign_partitions(bootstrap: str) -> int:
    """Partitions already on the broker (other installations' topics, Kafka's own aside). A broker pays for each
    one it holds: a few thousand left behind by interrupted runs raise its CPU, and so every figure here."""
    settings = load_settings(_env_file=None, kafka_bootstrap=bootstrap)
    async with admin_client(settings) as admin:
        names = [name for name in await admin.list_topics() if not name.startswith("__")]
        if not names:
            return 0
        described = await admin.describe_topics(names)
    return sum(len(topic.get("partitions", ())) for topic in described)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from services.devstack.stack import up

    stack_env = up()
    try:
        kafka, database = stack_env.env["CHIME_KAFKA_BOOTSTRAP"], stack_env.env["CHIME_DATABASE_URL"]
        env = Env(kafka, database, args.executors)
        sink = BenchSink()
        await sink.start()
        results: dict[str, Any] = {
            "started": datetime.now(UTC).isoformat(),
            "smoke": args.smoke,
            "executors": args.executors,
            "api_workers": args.api_workers,
            "broker_partitions_before": await foreign_partitions(env.kafka),
        }
        try:
            everything = {"steady", "burst", "api", "bulk", *(("scale",) if args.smoke else ())}
            wanted = everything if args.scenario == "all" else {args.scenario}
            if args.smoke:
                schedules, interval, window, burst_n, api_rate, api_s, samples = 40, 2, 4.0, 40, 20.0, 1.0, 5
            else:
                schedules, interval, window = args.schedules, args.interval, args.seconds
                burst_n, api_rate, api_s, samples = args.burst, args.api_rate, 10.0, 100
            if "steady" in wanted:
                results["steady"] = await interval_scenario(env, sink, schedules, interval, window, burst=False)
            if "burst" in wanted:
                results["burst"] = await interval_scenario(env, sink, burst_n, interval, min(window, 30.0), burst=True)
            if "api" in wanted:
                # Only the API scenario needs more than one API process: elsewhere the API sits idle.
                api_env = dataclasses.replace(env, api_workers=args.api_workers)
                results["api"] = await chime_api(api_env, api_rate, api_s, samples, 3.0 if args.smoke else API_WARMUP_S)
            if "scale" in wanted:
                scale_n, scale_interval, after_kill = (
                    (2_000, 20, 25.0) if args.smoke else (args.scale_schedules, args.scale_interval, 90.0)
                )
                results["scale"] = await chime_scale(env, scale_n, scale_interval, after_kill)
            if "bulk" in wanted:
                results["bulk"] = await chime_bulk(env, sink, 40 if args.smoke else args.bulk, 1 if args.smoke else 3)
            if "ramp" in wanted:
                results["ramp"] = await ramp(env, sink, args.ramp_start, args.ramp_step, args.ramp_stop, 30.0)
        finally:
            await sink.stop()
        return results
    finally:
        stack_env.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("all", "steady", "burst", "api", "bulk", "ramp", "scale"), default="all")
    parser.add_argument("--bulk", type=int, default=1_000, help="bulk: schedules paused at once (default 1,000)")
    parser.add_argument("--schedules", type=int, default=10_000, help="steady: interval schedules (default 10,000)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between fires (default 10)")
    parser.add_argument("--seconds", type=float, default=60, help="measurement window (default 60)")
    parser.add_argument("--burst", type=int, default=10_000, help="burst: schedules due at once (default 10,000)")
    parser.add_argument("--api-rate", type=float, default=500, help="api: creates per second (default 500)")
    parser.add_argument("--ramp-start", type=int, default=10_000)
    parser.add_argument("--ramp-step", type=int, default=5_000)
    parser.add_argument("--ramp-stop", type=int, default=50_000)
    parser.add_argument("--scale-schedules", type=int, default=1_000_000, help="scale: schedules (default 1M)")
    parser.add_argument("--scale-interval", type=int, default=3600, help="scale: seconds between fires (default 3600)")
    parser.add_argument("--executors", type=int, default=1, help="executor processes in Chime's stack (default 1)")
    parser.add_argument("--api-workers", type=int, default=2, help="api: API processes (default 2; the rest run one)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: check that every figure comes out")
    args = parser.parse_args()
    results = eventloop.run(run(args))
    lines = table(results) + [""] + cpu_lines(results)
    if results["broker_partitions_before"]:
        lines.append(
            f"note: the broker held {results['broker_partitions_before']:,} partitions of other installations when"
            " this run began; each one costs the broker CPU, so CPU and lag figures read high (see bench/README.md)"
        )
    print("\n".join(lines))  # noqa: T201 - the report is the output
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{'smoke-' if args.smoke else ''}{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path}")  # noqa: T201
    if args.smoke:
        missing = [
            f"{name}.{side}"
            for name in ("steady", "burst")
            for side in ("chime", "apscheduler")
            if not results[name][side]["lag"].get("count")
        ]
        if not results["api"]["create_latency"].get("count") or not results["api"]["propagation"].get("count"):
            missing.append("api")
        scale = results.get("scale") or {}
        if not scale.get("heap_entries") or scale.get("first_on_time_fire_after_kill_s") is None:
            missing.append("scale")
        if missing:
            sys.exit(f"smoke: no figures from {', '.join(missing)}")


if __name__ == "__main__":
    main()
