"""The reproducibility report: refit chosen configurations with several seeds, compare them with error bars,
re-derive one logged run, and write it all as Markdown and self-contained HTML (`python src/report.py`)."""
