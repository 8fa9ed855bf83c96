"""Reports: plots (:mod:`nasflow.report.plots`, imported on demand) and tables."""
