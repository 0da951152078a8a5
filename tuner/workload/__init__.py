"""The workload a trial replays: request traces and their arrival schedules."""
