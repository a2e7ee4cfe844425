"""The results layer: finished jobs read back into tables, statistics, figures, paper tables,
regression checks and experiment loggers. Imports the engine (its record and file formats) and below."""
