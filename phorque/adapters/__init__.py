"""Adapters to the outside: Torque's commands and files, the clouds' APIs, the configuration file, external commands."""
