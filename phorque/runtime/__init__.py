"""The daemon's runtime: triggers, file watching, nudges, the schedule, metrics and events."""
