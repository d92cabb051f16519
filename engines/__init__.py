"""Local model engines (the `elasticsearch` service), imported lazily."""
