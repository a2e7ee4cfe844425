"""The engine: one job, from a composed config to its rows, curves and record (build the cell,
score its batches, the attribution cache, the job folder's files, timing). Imports the config
layer and below."""
