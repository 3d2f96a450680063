"""Mixed tables (issue 30): synthetic rows, imputation and per-column anomaly scores from a
run trained on a table (`vaekit train --data table.csv`).

    from vaekit.tables import train_table, sample_table, impute, score_table
    run = train_table("examples/penguins.csv", "runs/penguins")  # the table defaults
    rows = sample_table("runs/penguins", 500)          # dict column -> list of cells
    filled = impute("runs/penguins", "gaps.csv")       # (or a dict of columns / a DataFrame)
    scores, per_column = score_table("runs/penguins", "new.csv")

Tables come back as dicts of columns in the schema's order (a DataFrame where one was given);
`pandas.DataFrame(rows)` makes one. Cells are the original kinds: integers as int, levels as
their original values (strings, or numbers for numeric levels), a missing cell as None.
"""

from vaekit.tables.impute import impute
from vaekit.tables.score import score_table
from vaekit.tables.synth import as_run, sample_table
from vaekit.tables.train import train_table

__all__ = ["as_run", "impute", "sample_table", "score_table", "train_table"]
