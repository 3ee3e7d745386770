"""Reference model server(s) used by loadgrade's demo and tests."""
