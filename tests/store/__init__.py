"""The store (gate/store): every table, through its methods, on real SQLite files."""
