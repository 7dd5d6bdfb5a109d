"""The planner: schedule state in Faust tables, a time-ordered heap per partition, ``run.due`` on time."""
