"""Reading a store: index tables, lazy events, run checks, conditions and run selection."""
