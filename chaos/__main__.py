"""`make chaos`: faults under load against the whole stack, each followed by a check that nothing was lost.

Scenarios (bounded in time, each stops by itself), each under the same load: 2,000 interval schedules (2–5 s)
and 200 one-offs over 8 tenants firing into a recording sink; at the end a tenth of the schedules is deleted
and another tenth paused:
- kill each service: the api, recorder, planner, executor and dlq are SIGKILLed one after another and restarted;
- replicas: a second planner and executor join; the first of each is SIGKILLed for good and its partitions move
  to the survivor; a third planner joins. No fire may be published twice across the rebalances no crash caused
  (not in ``--quick``);
- poison on every topic: an undecodable record on each topic a service reads; every reader must quarantine it
  in ``chime.quarantine`` and stay healthy (not in ``--quick``);
- failing receiver: the sink answers 500 to 30% of calls, lets 5% time out and resets 5% (half the load, four
  attempts 1 s apart): every fire must succeed or be in the dead-letter queue (not in ``--quick``);
- kill kafka, restart postgres: the local broker is SIGKILLed and started again, then Postgres is restarted
  (only when both are the local ones; not in ``--quick``);
- kafka down while schedules change: with the local broker SIGKILLed, the API creates schedules, deletes a
  quarter of the new ones and pauses another quarter; once the broker is back, the new schedules fire and the
  deleted and paused ones never do (local broker only; not in ``--quick``).

Checked afterwards from the sink (``chaos/invariants.py``): every nominal time in the fault window reached the
sink; no fire went out under two webhook-ids; nothing was delivered for a nominal time more than 1 s after its
schedule's delete or pause was acknowledged. Repeats of a webhook-id are counted (crashes may cause them).

``--quick`` (about two minutes; ``make test`` runs it): 150 schedules at 1–3 s, shorter outages.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scenarios import Env
from bench.sink import BenchSink
from chaos.invariants import Verdict
from chaos.scenarios import (
    Load,
    failing_receiver,
    kafka_down_while_changing,
    kill_broker_and_database,
    kill_each_service,
    poison_every_topic,
    replicas_and_rebalance,
    say,
)
from shared import eventloop

RESULTS = Path(__file__).parent / "results"


SCENARIOS = ("kill-each", "replicas", "poison", "failing-receiver", "kill-kafka-postgres", "kafka-down-changes")


async def run(quick: bool, only: set[str]) -> list[Verdict]:
    from services.devstack.stack import up

    stack_env = up()
    try:
        env = Env(stack_env.env["CHIME_KAFKA_BOOTSTRAP"], stack_env.env["CHIME_DATABASE_URL"])
        sink = BenchSink()
        await sink.start()
        try:
            load = Load.quick() if quick else Load.full()
            wanted = only or ({"kill-each"} if quick else set(SCENARIOS))
            verdicts = []
            if "kill-each" in wanted:
                verdicts.append(await kill_each_service(env, sink, load))
            if "replicas" in wanted:
                verdicts.append(await replicas_and_rebalance(env, sink, load))
            if "poison" in wanted:
                verdicts.append(await poison_every_topic(env, sink, load))
            if "failing-receiver" in wanted:
                verdicts.append(await failing_receiver(env, load))
            # Killing the broker and the database would pull them from under anything else using them, so only
            # the local ones are killed, which this suite can start again.
            if wanted & {"kill-kafka-postgres", "kafka-down-changes"} and not _local_stack(env):
                say("skipping the broker and database faults: Kafka and Postgres are not the local ones")
            else:
                if "kill-kafka-postgres" in wanted:
                    verdicts.append(await kill_broker_and_database(env, sink, load))
                if "kafka-down-changes" in wanted:
                    verdicts.append(await kafka_down_while_changing(env, sink, load))
            return verdicts
        finally:
            await sink.stop()
    finally:
        stack_env.down()


def _local_stack(env: Env) -> bool:
    """Whether Kafka and Postgres are the ones under ``.chime/`` (which this suite may kill and start again)."""
    from services.devstack.kafka import LocalKafka
    from services.devstack.postgres import is_running
    from services.devstack.stack import PG_DIR

    kafka = LocalKafka()
    return (
        env.kafka == kafka.bootstrap
        and kafka.is_running()
        and is_running(PG_DIR)
        and str(PG_DIR.resolve()) in env.database
    )


def report(verdicts: list[Verdict]) -> list[str]:
    head = ("scenario", "expected", "delivered", "dead-lettered", "lost", "dup ids", "repeats", "after delete/pause",
            "passed")  # fmt: skip
    rows = [
        (v.scenario, f"{v.expected:,}", f"{v.delivered:,}", f"{v.dead_lettered:,}", str(v.lost), str(v.duplicate_ids),
         f"{v.repeats:,}", str(v.after_delete), "yes" if v.passed else "NO")
        for v in verdicts
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines += [f"{v.scenario}: {name} = {value:,.1f}" for v in verdicts for name, value in v.facts]
    lines += [f"{v.scenario}: {problem}" for v in verdicts for problem in v.problems]
    lines += [f"{v.scenario}: e.g. {example}" for v in verdicts if not v.passed for example in v.examples]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small load, short outages (about two minutes)")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, default=[], help="run only this scenario (repeatable)"
    )
    args = parser.parse_args()
    verdicts = eventloop.run(run(args.quick, set(args.scenario)))
    print("\n".join(report(verdicts)))  # noqa: T201 - the report is the output
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{'quick-' if args.quick else ''}{stamp}.json"
    out: dict[str, Any] = {"quick": args.quick, "scenarios": [v.as_dict() for v in verdicts]}
    path.write_text(json.dumps(out, indent=2))
    print(f"\nresults: {path}")  # noqa: T201
    if not all(v.passed for v in verdicts):
        sys.exit("chaos: an invariant failed")


if __name__ == "__main__":
    main()
