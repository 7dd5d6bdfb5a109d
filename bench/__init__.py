"""`make bench`: Chime against APScheduler 3.x on this machine, same sink, same schedules, same call."""
