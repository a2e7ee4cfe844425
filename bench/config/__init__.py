"""The config layer: composing a job's config, its schema, the checks of every value and of what a
config may run (trust), and what the launchers need. Imports only the core, data, models, methods
and metrics."""
