"""Everything the gate keeps on disk, in one SQLite file. All SQL lives in this package: every
table, every migration and every query; the rest of gate calls its methods."""
